output "service_url" {
  description = "Set this as the repository variable INFERENCE_URL."
  value       = module.inference_host.service_url
}

output "ssh_command" {
  description = "SSH into the VM (from admin_source_cidrs only)."
  value       = module.inference_host.ssh_command
}

output "public_ip_address" {
  description = "Static public IP of the VM."
  value       = module.inference_host.public_ip_address
}

output "fqdn" {
  description = "DNS name, when dns_label is set."
  value       = module.inference_host.fqdn
}

output "identity_principal_id" {
  description = "Principal id of the VM's managed identity."
  value       = module.inference_host.identity_principal_id
}
