locals {
  service_port        = 6666
  resource_group_name = coalesce(var.resource_group_name, "rg-${var.name_prefix}")
  vm_name             = "vm-${var.name_prefix}"
  single_vm_enabled   = !var.scale_set.enabled

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
  }

  # Scale set instances never see a registration token: they build and serve app_ref themselves.
  cloud_init_scale_set_vars = merge(local.cloud_init_vm_vars, {
    bootstrap_mode            = "pull"
    runner_registration_token = "none"
    runner_name               = "none"
  })
}
