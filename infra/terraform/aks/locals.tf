locals {
  resource_group_name = "rg-${var.name_prefix}-aks"
  cluster_name        = "aks-${var.name_prefix}"
  # Registry names are global, alphanumeric only.
  registry_name  = "acr${var.name_prefix}${substr(sha256(data.azurerm_client_config.current.subscription_id), 0, 8)}"
  dns_service_ip = cidrhost(var.service_cidr, 10)

  tags = merge(var.tags, {
    workload   = "inference-service"
    managed-by = "terraform"
  })
}
