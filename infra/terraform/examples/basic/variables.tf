variable "location" {
  type        = string
  default     = "westeurope"
  description = "Azure region."
}

variable "admin_source_cidrs" {
  type        = list(string)
  description = "Your public address as a /32, for SSH. Find it with `curl -s https://ifconfig.me`."
}

variable "admin_ssh_public_key" {
  type        = string
  description = "Your OpenSSH public key."
}

variable "repository_url" {
  type        = string
  description = "https://github.com/OWNER/REPO of your fork."
}

variable "runner_registration_token" {
  type        = string
  sensitive   = true
  description = "Output of `gh api -X POST repos/OWNER/REPO/actions/runners/registration-token --jq .token` (valid for one hour)."
}

variable "dns_label" {
  type        = string
  default     = null
  description = "Optional DNS label for the public IP."
}
