output "id" {
  description = "Resource id of the VM Scale Set."
  value       = azurerm_linux_virtual_machine_scale_set.this.id
}

output "identity_principal_id" {
  description = "Principal id of the scale set's system-assigned managed identity."
  value       = azurerm_linux_virtual_machine_scale_set.this.identity[0].principal_id
}

output "load_balancer_id" {
  description = "Resource id of the Standard Load Balancer."
  value       = azurerm_lb.this.id
}

output "health_probe_id" {
  description = "Resource id of the /readyz health probe."
  value       = azurerm_lb_probe.readyz.id
}
