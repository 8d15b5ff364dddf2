locals {
  # Azure gives each frontend IP configuration of a Standard Load Balancer 64,000 SNAT ports.
  snat_ports_per_frontend_ip = 64000
}
