# First try with local state: run from this directory. See ../../README.md.
module "inference_host" {
  source = "../.."

  location                  = var.location
  admin_source_cidrs        = var.admin_source_cidrs
  admin_ssh_public_key      = var.admin_ssh_public_key
  repository_url            = var.repository_url
  runner_registration_token = var.runner_registration_token
  dns_label                 = var.dns_label
}
