locals {
  service_port        = 6666
  https_port          = 443
  acme_http_port      = 80
  resource_group_name = coalesce(var.resource_group_name, "rg-${var.name_prefix}")
  vm_name             = "vm-${var.name_prefix}"
  single_vm_enabled   = !var.scale_set.enabled

  # HTTPS on the single VM: the certificate's name is tls_domain, else the public IP's Azure name.
  tls_enabled = var.tls_email != null
  tls_domain  = local.tls_enabled ? coalesce(var.tls_domain, try("${var.dns_label}.${var.location}.cloudapp.azure.com", null)) : ""

  # Inbound rules besides SSH. ACME's http-01 challenge comes from addresses nobody publishes, so
  # port 80 is open to everyone; nginx answers it there and redirects everything else to HTTPS.
  public_inbound_rules = merge(
    var.plain_http_enabled ? {
      AllowServiceFromClients = {
        description = "The inference service over plain HTTP, published by nginx on the host (or the load balancer)."
        priority    = 110
        port        = local.service_port
        sources     = var.service_source_cidrs
      }
    } : {},
    local.tls_enabled ? {
      AllowHttpsFromClients = {
        description = "The inference service over HTTPS, terminated by nginx on the VM."
        priority    = 120
        port        = local.https_port
        sources     = var.service_source_cidrs
      }
      AllowAcmeHttpChallenge = {
        description = "ACME http-01 challenges for the certificate (and a redirect to HTTPS)."
        priority    = 130
        port        = local.acme_http_port
        sources     = ["0.0.0.0/0"]
      }
    } : {},
  )

  tags = merge(var.tags, {
    workload   = "inference-service"
    managed-by = "terraform"
  })

  # The keys must match the ${...} names used in cloud-init.yaml.tftpl; tests/test_terraform.py checks it.
  cloud_init_vm_vars = {
    bootstrap_mode            = "runner"
    repository_url            = var.repository_url
    runner_registration_token = coalesce(var.runner_registration_token, "none")
    runner_labels             = join(",", var.runner_labels)
    runner_name               = coalesce(var.runner_name, local.vm_name)
    runner_version            = var.runner_version
    runner_sha256             = var.runner_sha256
    app_ref                   = var.scale_set.app_ref
    service_port              = local.service_port
    tls_domain                = local.tls_domain
    tls_email                 = coalesce(var.tls_email, "none")
  }

  # Scale set instances never see a registration token: they build and serve app_ref themselves.
  cloud_init_scale_set_vars = merge(local.cloud_init_vm_vars, {
    bootstrap_mode            = "pull"
    runner_registration_token = "none"
    runner_name               = "none"
  })
}
