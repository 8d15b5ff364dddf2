variable "name" {
  type        = string
  description = "Name of the scale set; the load balancer is named lb-<name>."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,62}[a-z0-9]$", var.name))
    error_message = "name must be 3-64 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "location" {
  type        = string
  description = "Azure region."
}

variable "resource_group_name" {
  type        = string
  description = "Existing resource group for the scale set and its load balancer."
}

variable "subnet_id" {
  type        = string
  description = "Subnet of the instances. Its NSG must allow the service port from the clients."
}

variable "public_ip_address_id" {
  type        = string
  description = "Static Standard public IP used as the load balancer frontend, for inbound and outbound traffic."
}

variable "instances" {
  type        = number
  description = "Number of instances."

  validation {
    condition     = var.instances >= 1 && var.instances <= 100
    error_message = "instances must be between 1 and 100."
  }
}

variable "vm_size" {
  type        = string
  description = "Size of each instance (x86-64)."
}

variable "admin_username" {
  type        = string
  description = "Administrator login (SSH key only)."
}

variable "admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the administrator."
}

variable "custom_data" {
  type        = string
  sensitive   = true
  description = "Base64 cloud-init for every instance (the root module renders cloud-init.yaml.tftpl in pull mode)."
}

variable "image" {
  type = object({
    publisher = string
    offer     = string
    sku       = string
    version   = string
  })
  description = "Marketplace image of the instances."
}

variable "os_disk_size_gb" {
  type        = number
  description = "OS disk size in GiB."
}

variable "os_disk_storage_account_type" {
  type        = string
  description = "Storage type of the OS disks."
}

variable "encryption_at_host_enabled" {
  type        = bool
  description = "Encrypt disks at the host (needs the Microsoft.Compute/EncryptionAtHost feature)."
}

variable "trusted_launch_enabled" {
  type        = bool
  description = "Enable Secure Boot and vTPM."
}

variable "service_port" {
  type        = number
  description = "Port that nginx publishes on each instance and the load balancer forwards."

  validation {
    condition     = var.service_port > 0 && var.service_port < 65536
    error_message = "service_port must be a TCP port number."
  }
}

variable "outbound_ports_per_instance" {
  type        = number
  default     = 1024
  description = "SNAT ports the outbound rule gives each instance, out of the 64,000 of the frontend IP."

  validation {
    condition     = var.outbound_ports_per_instance >= 8 && var.outbound_ports_per_instance <= 64000 && var.outbound_ports_per_instance % 8 == 0
    error_message = "outbound_ports_per_instance must be a multiple of 8 between 8 and 64000."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}
