variable "location" {
  type        = string
  description = "Azure region, for example `westeurope`."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]+$", var.location))
    error_message = "location must be an Azure region name in lower case without spaces, for example \"westeurope\"."
  }
}

variable "name_prefix" {
  type        = string
  default     = "inference"
  description = "Prefix for resource names. Lower-case letters and digits (the registry name may hold nothing else)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,20}$", var.name_prefix))
    error_message = "name_prefix must be 3-21 lower-case letters and digits, starting with a letter."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}

variable "kubernetes_version" {
  type        = string
  default     = null
  description = "Kubernetes minor version such as \"1.33\". null takes the region's default; the patch channel keeps it current."

  validation {
    condition     = var.kubernetes_version == null || can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as \"1.33\", or null."
  }
}

variable "vnet_address_space" {
  type        = list(string)
  default     = ["10.43.0.0/16"]
  description = "Address space of the cluster's virtual network (nodes only: pods use the overlay pod_cidr)."

  validation {
    condition     = length(var.vnet_address_space) > 0 && alltrue([for cidr in var.vnet_address_space : can(cidrhost(cidr, 0))])
    error_message = "vnet_address_space must be a non-empty list of CIDR ranges."
  }
}

variable "node_subnet_address_prefix" {
  type        = string
  default     = "10.43.0.0/22"
  description = "Address prefix of the node subnet."

  validation {
    condition     = can(cidrhost(var.node_subnet_address_prefix, 0))
    error_message = "node_subnet_address_prefix must be a CIDR range."
  }
}

variable "pod_cidr" {
  type        = string
  default     = "192.168.0.0/16"
  description = "Overlay address range for pods. Must not overlap the virtual network or anything it peers with."

  validation {
    condition     = can(cidrhost(var.pod_cidr, 0))
    error_message = "pod_cidr must be a CIDR range."
  }
}

variable "service_cidr" {
  type        = string
  default     = "172.16.0.0/16"
  description = "Address range for Kubernetes services. dns_service_ip is taken from it."

  validation {
    condition     = can(cidrhost(var.service_cidr, 10))
    error_message = "service_cidr must be a CIDR range with room for at least 11 addresses."
  }
}

variable "node_vm_size" {
  type        = string
  default     = "Standard_D4ds_v5"
  description = "VM size of the workload node pool that runs the service. It needs a temp disk of at least 100 GiB for the ephemeral OS disk."

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.node_vm_size))
    error_message = "node_vm_size must be an Azure VM size such as \"Standard_D4ds_v5\"."
  }
}

variable "node_count_min" {
  type        = number
  default     = 2
  description = "Minimum number of nodes the cluster autoscaler keeps."

  validation {
    condition     = var.node_count_min >= 1 && var.node_count_min <= 100
    error_message = "node_count_min must be between 1 and 100."
  }
}

variable "node_count_max" {
  type        = number
  default     = 5
  description = "Maximum number of nodes the cluster autoscaler may add. Must not be below node_count_min."

  validation {
    condition     = var.node_count_max >= 1 && var.node_count_max <= 1000
    error_message = "node_count_max must be between 1 and 1000."
  }
}

variable "availability_zones" {
  type        = list(string)
  default     = ["1", "2", "3"]
  description = "Zones for the nodes. The module targets regions with availability zones (the registry is zone redundant too)."

  validation {
    condition     = alltrue([for zone in var.availability_zones : contains(["1", "2", "3"], zone)])
    error_message = "availability_zones may only contain \"1\", \"2\" and \"3\"."
  }
}

variable "api_server_authorized_ip_ranges" {
  type        = list(string)
  description = "CIDR ranges allowed to reach the Kubernetes API server (your workstation, your CI's egress). No default: the API is never open to the whole Internet."

  validation {
    condition = length(var.api_server_authorized_ip_ranges) > 0 && alltrue([
      for cidr in var.api_server_authorized_ip_ranges :
      can(cidrhost(cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], cidr)
    ])
    error_message = "api_server_authorized_ip_ranges must be a non-empty list of CIDR ranges and must not contain 0.0.0.0/0 or ::/0."
  }
}

variable "admin_group_object_ids" {
  type        = list(string)
  default     = []
  description = "Entra ID group object ids that get cluster-admin through Azure RBAC. Local accounts are disabled."

  validation {
    condition     = alltrue([for id in var.admin_group_object_ids : can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", id))])
    error_message = "admin_group_object_ids must be a list of object ids (GUIDs in lower case)."
  }
}

variable "sku_tier" {
  type        = string
  default     = "Standard"
  description = "AKS pricing tier. Standard carries the API server uptime SLA; Free is for experiments."

  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.sku_tier)
    error_message = "sku_tier must be Free, Standard or Premium."
  }
}

variable "log_retention_days" {
  type        = number
  default     = 30
  description = "Retention of the Log Analytics workspace that receives container insights."

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "system_node_vm_size" {
  type        = string
  default     = "Standard_D2ds_v5"
  description = "VM size of the system node pool, which runs only critical add-ons. Needs a temp disk of at least 64 GiB for the ephemeral OS disk."

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.system_node_vm_size))
    error_message = "system_node_vm_size must be an Azure VM size such as \"Standard_D2ds_v5\"."
  }
}

variable "web_app_routing_dns_zone_ids" {
  type        = list(string)
  default     = []
  description = "Azure DNS zones in which the application routing add-on creates records for the ingress hosts. Empty: the add-on manages no DNS; point the ingress host at its public IP yourself."

  validation {
    condition     = alltrue([for id in var.web_app_routing_dns_zone_ids : can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Network/(privateDnsZones|dnsZones)/[^/]+$", id))])
    error_message = "web_app_routing_dns_zone_ids must hold resource ids of Azure DNS zones: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/dnsZones/<zone>."
  }
}
