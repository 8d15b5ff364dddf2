variable "location" {
  type        = string
  description = "Azure region for every resource, for example `westeurope`. List them with `az account list-locations -o table`."

  validation {
    condition     = can(regex("^[a-z][a-z0-9]+$", var.location))
    error_message = "location must be an Azure region name in lower case without spaces, for example \"westeurope\"."
  }
}

variable "name_prefix" {
  type        = string
  default     = "inference"
  description = "Prefix for resource names (resource group, network, VM). Lower-case letters, digits and hyphens."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-22 characters: lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "resource_group_name" {
  type        = string
  default     = null
  description = "Name of the resource group to create. Defaults to `rg-<name_prefix>`."

  validation {
    condition     = var.resource_group_name == null || can(regex("^[-\\w._()]{1,89}[-\\w_()]$", var.resource_group_name))
    error_message = "resource_group_name must be 2-90 characters of letters, digits, underscores, hyphens, periods and parentheses, and must not end with a period."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags added to every resource."
}

variable "vnet_address_space" {
  type        = list(string)
  default     = ["10.42.0.0/16"]
  description = "Address space of the virtual network."

  validation {
    condition     = length(var.vnet_address_space) > 0 && alltrue([for cidr in var.vnet_address_space : can(cidrhost(cidr, 0))])
    error_message = "vnet_address_space must be a non-empty list of CIDR ranges such as \"10.42.0.0/16\"."
  }
}

variable "subnet_address_prefix" {
  type        = string
  default     = "10.42.1.0/24"
  description = "Address prefix of the subnet for the VM (or the scale set). Must lie inside vnet_address_space."

  validation {
    condition     = can(cidrhost(var.subnet_address_prefix, 0))
    error_message = "subnet_address_prefix must be a CIDR range such as \"10.42.1.0/24\"."
  }
}

variable "admin_source_cidrs" {
  type        = list(string)
  description = "CIDR ranges allowed to reach SSH (port 22), for example your workstation's public address as \"203.0.113.7/32\". There is no default: SSH is never open to the whole Internet."

  validation {
    condition     = length(var.admin_source_cidrs) > 0
    error_message = "admin_source_cidrs must name at least one CIDR range, for example [\"203.0.113.7/32\"]."
  }

  validation {
    condition = alltrue([
      for cidr in var.admin_source_cidrs :
      !contains(["*", "any", "internet", "0.0.0.0/0", "::/0"], lower(trimspace(cidr)))
    ])
    error_message = "admin_source_cidrs must not contain \"*\", \"0.0.0.0/0\", \"::/0\", \"Internet\" or \"Any\": SSH is only opened to the ranges you administer from."
  }

  validation {
    condition = alltrue([
      for cidr in var.admin_source_cidrs :
      can(cidrhost(cidr, 0)) && try(tonumber(split("/", cidr)[1]) >= 8, false)
    ])
    error_message = "Each admin_source_cidrs entry must be a CIDR range with a prefix length of at least /8, such as \"203.0.113.7/32\"."
  }
}

variable "service_source_cidrs" {
  type        = list(string)
  default     = ["0.0.0.0/0"]
  description = "CIDR ranges allowed to call the service on port 6666. The default publishes the service to the Internet; narrow it for an internal service."

  validation {
    condition     = length(var.service_source_cidrs) > 0 && alltrue([for cidr in var.service_source_cidrs : can(cidrhost(cidr, 0))])
    error_message = "service_source_cidrs must be a non-empty list of CIDR ranges such as \"0.0.0.0/0\" or \"198.51.100.0/24\"."
  }
}

variable "admin_username" {
  type        = string
  default     = "azureuser"
  description = "Login name of the VM administrator (SSH key only)."

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.admin_username)) && !contains(["root", "admin", "administrator", "deploy"], var.admin_username)
    error_message = "admin_username must be a lower-case Linux user name of up to 32 characters and must not be root, admin, administrator or deploy (deploy is the service account)."
  }
}

variable "admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the administrator, for example the content of ~/.ssh/id_ed25519.pub."

  validation {
    condition     = can(regex("^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( .*)?$", trimspace(var.admin_ssh_public_key)))
    error_message = "admin_ssh_public_key must be an OpenSSH public key line starting with ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp*."
  }
}

variable "vm_size" {
  type        = string
  default     = "Standard_D2s_v5"
  description = "Size of the VM (and of each scale set instance). Must be an x86-64 size: the pinned runner build is linux-x64."

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.vm_size)) && !can(regex("^Standard_[A-Za-z]+[0-9]+[a-z]*p[a-z]*_", var.vm_size))
    error_message = "vm_size must be an x86-64 Azure size such as \"Standard_D2s_v5\"; Arm64 sizes (with a \"p\", such as Standard_D2ps_v5) are not supported."
  }
}

variable "os_disk_size_gb" {
  type        = number
  default     = 64
  description = "OS disk size in GiB. Docker images and build cache live there."

  validation {
    condition     = var.os_disk_size_gb >= 30 && var.os_disk_size_gb <= 1024
    error_message = "os_disk_size_gb must be between 30 and 1024."
  }
}

variable "os_disk_storage_account_type" {
  type        = string
  default     = "Premium_LRS"
  description = "Storage type of the OS disk."

  validation {
    condition     = contains(["Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS", "Premium_ZRS"], var.os_disk_storage_account_type)
    error_message = "os_disk_storage_account_type must be one of Standard_LRS, StandardSSD_LRS, Premium_LRS, StandardSSD_ZRS, Premium_ZRS."
  }
}

variable "image" {
  type = object({
    publisher = string
    offer     = string
    sku       = string
    version   = string
  })
  default = {
    publisher = "Canonical"
    offer     = "ubuntu-24_04-lts"
    sku       = "server"
    version   = "latest"
  }
  description = "Marketplace image. The cloud-init bootstrap targets Ubuntu 24.04 LTS (Gen2, Trusted Launch capable); other images are not tested."

  validation {
    condition     = var.image.publisher == "Canonical" && can(regex("^ubuntu-2[4-9]_04-lts$", var.image.offer))
    error_message = "image must be a Canonical Ubuntu LTS image from 24.04 on (offer \"ubuntu-24_04-lts\"); the bootstrap relies on its packages."
  }
}

variable "encryption_at_host_enabled" {
  type        = bool
  default     = true
  description = "Encrypt the OS disk, temp disk and caches at the host. Needs the subscription feature Microsoft.Compute/EncryptionAtHost (see README.md)."
}

variable "trusted_launch_enabled" {
  type        = bool
  default     = true
  description = "Enable Trusted Launch: Secure Boot and vTPM."
}

variable "dns_label" {
  type        = string
  default     = null
  description = "Optional DNS label for the public IP: the service gets <dns_label>.<location>.cloudapp.azure.com."

  validation {
    condition     = var.dns_label == null || can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", var.dns_label))
    error_message = "dns_label must be 3-63 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "repository_url" {
  type        = string
  description = "HTTPS URL of the GitHub repository the runner serves (and the scale set clones), for example https://github.com/OWNER/REPO."

  validation {
    condition     = can(regex("^https://github\\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.repository_url))
    error_message = "repository_url must look like https://github.com/OWNER/REPO (no trailing slash, no .git)."
  }
}

variable "runner_registration_token" {
  type        = string
  default     = null
  sensitive   = true
  description = "GitHub Actions runner registration token: `gh api -X POST repos/OWNER/REPO/actions/runners/registration-token --jq .token`. It expires one hour after it is issued. Required unless scale_set.enabled."

  validation {
    condition     = var.runner_registration_token == null || can(regex("^[A-Za-z0-9_-]{20,200}$", var.runner_registration_token))
    error_message = "runner_registration_token must be the token printed by the registration-token API (letters and digits)."
  }

  validation {
    condition     = var.scale_set.enabled || var.runner_registration_token != null # pragma: allowlist secret
    error_message = "runner_registration_token is required for the single VM (scale_set.enabled = false): gh api -X POST repos/OWNER/REPO/actions/runners/registration-token --jq .token"
  }
}

variable "runner_labels" {
  type        = list(string)
  default     = ["self-hosted", "linux", "inference"]
  description = "Labels of the self-hosted runner. The deploy workflow selects the runner with them."

  validation {
    condition     = length(var.runner_labels) > 0 && alltrue([for label in var.runner_labels : can(regex("^[A-Za-z0-9._-]{1,64}$", label))])
    error_message = "runner_labels must be a non-empty list of labels made of letters, digits, dots, underscores and hyphens."
  }
}

variable "runner_name" {
  type        = string
  default     = null
  description = "Name the runner registers under. Defaults to the VM name."

  validation {
    condition     = var.runner_name == null || can(regex("^[A-Za-z0-9._-]{1,64}$", var.runner_name))
    error_message = "runner_name must be 1-64 letters, digits, dots, underscores and hyphens."
  }
}

variable "runner_version" {
  type        = string
  default     = "2.337.0"
  description = "Version of the GitHub Actions runner installed at boot. Change together with runner_sha256."

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.runner_version))
    error_message = "runner_version must be a release number such as \"2.337.0\"."
  }
}

variable "runner_sha256" {
  type        = string
  default     = "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613"
  description = "SHA-256 of actions-runner-linux-x64-<runner_version>.tar.gz, as published in the runner's release notes. The bootstrap refuses an archive that does not match."

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.runner_sha256))
    error_message = "runner_sha256 must be 64 lower-case hexadecimal characters."
  }
}

variable "scale_set" {
  type = object({
    enabled                     = bool
    instances                   = optional(number, 2)
    app_ref                     = optional(string, "main")
    outbound_ports_per_instance = optional(number, 1024)
  })
  default     = { enabled = false, instances = 2 }
  description = "Scale-out option. When enabled, a VM Scale Set behind a Standard Load Balancer (health probe GET /readyz on 6666) replaces the single VM; every instance builds and serves `app_ref` of repository_url at boot instead of running a runner. Instances reach the Internet through the load balancer's outbound rule, which gives each one `outbound_ports_per_instance` SNAT ports of the frontend IP's 64,000, so instances x ports must stay within 64,000."

  validation {
    condition     = var.scale_set.instances >= 1 && var.scale_set.instances <= 100 && floor(var.scale_set.instances) == var.scale_set.instances
    error_message = "scale_set.instances must be a whole number between 1 and 100."
  }

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]{1,200}$", var.scale_set.app_ref))
    error_message = "scale_set.app_ref must be a branch, tag or commit SHA made of letters, digits, dots, slashes, underscores and hyphens."
  }

  validation {
    condition     = var.scale_set.outbound_ports_per_instance >= 8 && var.scale_set.outbound_ports_per_instance <= 64000 && var.scale_set.outbound_ports_per_instance % 8 == 0
    error_message = "scale_set.outbound_ports_per_instance must be a multiple of 8 between 8 and 64000 (Azure allocates SNAT ports in blocks of 8)."
  }

  validation {
    condition     = var.scale_set.instances * var.scale_set.outbound_ports_per_instance <= 64000
    error_message = "scale_set.instances x scale_set.outbound_ports_per_instance must not exceed the 64,000 SNAT ports of the load balancer's one frontend IP, or instances beyond that get no outbound access at boot: lower outbound_ports_per_instance (for example 512 for up to 125 instances) or the instance count."
  }
}

variable "tls_email" {
  type        = string
  default     = null
  description = "Contact address of the ACME (Let's Encrypt) account. Setting it turns HTTPS on for the single VM: cloud-init installs certbot and runs `inference-service deploy tls` for the certificate's domain (see tls_domain), certbot's timer renews it, and the NSG opens 443 to service_source_cidrs and 80 to everyone (the ACME http-01 challenge)."

  validation {
    condition     = var.tls_email == null || can(regex("^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}$", var.tls_email))
    error_message = "tls_email must be an e-mail address such as \"ops@example.com\"."
  }

  validation {
    condition     = var.tls_email == null || !var.scale_set.enabled
    error_message = "tls_email turns on HTTPS on the single VM only; with scale_set.enabled, terminate TLS in front of the load balancer (Application Gateway or Front Door) instead."
  }

  validation {
    condition     = var.tls_email == null || var.tls_domain != null || var.dns_label != null
    error_message = "tls_email needs a name for the certificate: set dns_label (the certificate is then for <dns_label>.<location>.cloudapp.azure.com) or tls_domain."
  }
}

variable "tls_domain" {
  type        = string
  default     = null
  description = "Domain name of the certificate, when it is not the Azure name <dns_label>.<location>.cloudapp.azure.com. Its DNS A record must point at the public IP before the VM boots (create the IP first with -target, or use dns_label). Only used with tls_email."

  validation {
    condition     = var.tls_domain == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.tls_domain))
    error_message = "tls_domain must be a lower-case DNS name such as \"inference.example.com\" (no scheme, no port, no wildcard)."
  }
}

variable "plain_http_enabled" {
  type        = bool
  default     = true
  description = "Keep plain HTTP on port 6666 open to service_source_cidrs (the original contract). false closes it in the NSG, leaving HTTPS on 443 as the only way in; that needs tls_email."

  validation {
    condition     = var.plain_http_enabled || var.tls_email != null
    error_message = "plain_http_enabled = false closes port 6666, and without HTTPS nothing would be left open: set tls_email (and dns_label or tls_domain) as well, or keep plain_http_enabled = true."
  }
}
