output "resource_group_name" {
  description = "Name of the resource group that holds everything."
  value       = azurerm_resource_group.this.name
}

output "public_ip_address" {
  description = "Static public IP of the service (the VM, or the load balancer when scale_set.enabled)."
  value       = azurerm_public_ip.this.ip_address
}

output "fqdn" {
  description = "DNS name of the public IP, or null when dns_label is not set."
  value       = azurerm_public_ip.this.fqdn
}

output "service_url" {
  description = "URL of the original inference endpoint: HTTPS when tls_email is set, else plain HTTP on 6666. Set it as the repository variable INFERENCE_URL."
  value       = local.tls_enabled ? "https://${local.tls_domain}/inference" : "http://${azurerm_public_ip.this.ip_address}:${local.service_port}/inference"
}

output "plain_http_url" {
  description = "The original endpoint over plain HTTP on 6666, or null when plain_http_enabled = false closes it."
  value       = var.plain_http_enabled ? "http://${azurerm_public_ip.this.ip_address}:${local.service_port}/inference" : null
}

output "ssh_command" {
  description = "SSH command for the administrator (single VM only; scale set instances have no public SSH)."
  value       = local.single_vm_enabled ? "ssh ${var.admin_username}@${azurerm_public_ip.this.ip_address}" : null
}

output "identity_principal_id" {
  description = "Principal (object) id of the system-assigned managed identity of the VM or scale set, for role assignments."
  value       = one(concat(azurerm_linux_virtual_machine.this[*].identity[0].principal_id, module.scale_set[*].identity_principal_id))
}

output "vm_id" {
  description = "Resource id of the VM, or null when scale_set.enabled."
  value       = one(azurerm_linux_virtual_machine.this[*].id)
}

output "scale_set_id" {
  description = "Resource id of the VM Scale Set, or null when the single VM is used."
  value       = one(module.scale_set[*].id)
}
