data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "this" {
  name     = local.resource_group_name
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "this" {
  name                = "vnet-${var.name_prefix}-aks"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = var.vnet_address_space
  tags                = local.tags
}

resource "azurerm_subnet" "nodes" {
  #checkov:skip=CKV2_AZURE_31:AKS attaches and maintains its own NSG on the node pools and opens exactly the ports of LoadBalancer services; a second NSG here would have to mirror those rules by hand.
  name                            = "snet-nodes"
  resource_group_name             = azurerm_resource_group.this.name
  virtual_network_name            = azurerm_virtual_network.this.name
  address_prefixes                = [var.node_subnet_address_prefix]
  default_outbound_access_enabled = false
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "log-${var.name_prefix}-aks"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_kubernetes_cluster" "this" {
  #checkov:skip=CKV_AZURE_115:The API server stays public for administrators' kubectl, limited by api_server_authorized_ip_ranges and Entra ID with local accounts disabled; CI never calls it (az aks command invoke goes through the Azure control plane).
  #checkov:skip=CKV_AZURE_6:False positive: the ranges come from the required variable api_server_authorized_ip_ranges, which has no default and whose validation refuses an empty list and 0.0.0.0/0; checkov cannot see a value that only exists at plan time.
  #checkov:skip=CKV_AZURE_117:Disks are encrypted at rest with platform-managed keys and at the host (host_encryption_enabled); customer-managed keys need a Key Vault and disk encryption set this module leaves to organisations that mandate them.
  name                = local.cluster_name
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  dns_prefix          = local.cluster_name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = var.sku_tier
  tags                = local.tags

  identity {
    type = "SystemAssigned"
  }

  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  role_based_access_control_enabled = true
  local_account_disabled            = true

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled     = true
    tenant_id              = data.azurerm_client_config.current.tenant_id
    admin_group_object_ids = var.admin_group_object_ids
  }

  api_server_access_profile {
    authorized_ip_ranges = var.api_server_authorized_ip_ranges
  }

  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"

  azure_policy_enabled         = true
  image_cleaner_enabled        = true
  image_cleaner_interval_hours = 48

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  # The application routing add-on (managed NGINX): the prod overlay's ingress class
  # webapprouting.kubernetes.azure.com. Its public load balancer serves the ingress.
  web_app_routing {
    dns_zone_ids = var.web_app_routing_dns_zone_ids
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.this.id
    msi_auth_for_monitoring_enabled = true
  }

  default_node_pool {
    name                         = "system"
    temporary_name_for_rotation  = "systemtmp"
    vm_size                      = var.system_node_vm_size
    vnet_subnet_id               = azurerm_subnet.nodes.id
    zones                        = var.availability_zones
    auto_scaling_enabled         = true
    min_count                    = 1
    max_count                    = 3
    max_pods                     = 110
    os_sku                       = "AzureLinux"
    os_disk_type                 = "Ephemeral"
    os_disk_size_gb              = 64
    host_encryption_enabled      = true
    only_critical_addons_enabled = true

    upgrade_settings {
      max_surge = "33%"
    }
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    pod_cidr            = var.pod_cidr
    service_cidr        = var.service_cidr
    dns_service_ip      = local.dns_service_ip
    load_balancer_sku   = "standard"
    outbound_type       = "loadBalancer"
  }

  lifecycle {
    ignore_changes = [default_node_pool[0].node_count]
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "workload" {
  name                  = "workload"
  kubernetes_cluster_id = azurerm_kubernetes_cluster.this.id
  mode                  = "User"
  vm_size               = var.node_vm_size
  vnet_subnet_id        = azurerm_subnet.nodes.id
  zones                 = var.availability_zones
  auto_scaling_enabled  = true
  min_count             = var.node_count_min
  max_count             = var.node_count_max
  max_pods              = 110
  os_sku                = "AzureLinux"
  os_disk_type          = "Ephemeral"
  os_disk_size_gb       = 100

  host_encryption_enabled = true
  node_labels             = { workload = "inference-service" }
  tags                    = local.tags

  upgrade_settings {
    max_surge = "33%"
  }

  lifecycle {
    ignore_changes = [node_count]

    precondition {
      condition     = var.node_count_max >= var.node_count_min
      error_message = "node_count_max must not be below node_count_min."
    }
  }
}

resource "azurerm_container_registry" "this" {
  #checkov:skip=CKV_AZURE_139:Images are pushed by GitHub-hosted runners, which have no fixed addresses; access needs Entra ID (admin user and anonymous pull are disabled). Put a private endpoint in front when CI runs inside the network.
  #checkov:skip=CKV_AZURE_164:Docker Content Trust is being retired by Azure Container Registry; sign images with Notation or cosign instead.
  #checkov:skip=CKV_AZURE_165:Single-region deployment: geo-replication would only add cost. Add georeplications blocks when the cluster spans regions.
  #checkov:skip=CKV_AZURE_166:Quarantine would block every pull until an external scanner releases the image, which this pipeline does not run; Defender for Containers scans the registry instead.
  name                          = local.registry_name
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  sku                           = "Premium"
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  data_endpoint_enabled         = true
  zone_redundancy_enabled       = true
  public_network_access_enabled = true
  retention_policy_in_days      = 7
  tags                          = local.tags
}

resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                            = azurerm_container_registry.this.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
  skip_service_principal_aad_check = true
}

# Whoever applies this configuration can use kubectl right away (local accounts are disabled).
resource "azurerm_role_assignment" "deployer_cluster_admin" {
  scope                = azurerm_kubernetes_cluster.this.id
  role_definition_name = "Azure Kubernetes Service RBAC Cluster Admin"
  principal_id         = data.azurerm_client_config.current.object_id
}
