resource "azurerm_lb" "this" {
  name                = "lb-${var.name}"
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "Standard"
  tags                = var.tags

  frontend_ip_configuration {
    name                 = "public"
    public_ip_address_id = var.public_ip_address_id
  }
}

resource "azurerm_lb_backend_address_pool" "this" {
  name            = "instances"
  loadbalancer_id = azurerm_lb.this.id
}

# nginx answers 503 on /readyz until the instance has built and started the service.
resource "azurerm_lb_probe" "readyz" {
  name                = "readyz"
  loadbalancer_id     = azurerm_lb.this.id
  protocol            = "Http"
  port                = var.service_port
  request_path        = "/readyz"
  interval_in_seconds = 5
  number_of_probes    = 2
}

resource "azurerm_lb_rule" "service" {
  name                           = "service"
  loadbalancer_id                = azurerm_lb.this.id
  protocol                       = "Tcp"
  frontend_port                  = var.service_port
  backend_port                   = var.service_port
  frontend_ip_configuration_name = "public"
  backend_address_pool_ids       = [azurerm_lb_backend_address_pool.this.id]
  probe_id                       = azurerm_lb_probe.readyz.id
  disable_outbound_snat          = true
  idle_timeout_in_minutes        = 4
}

# The subnet has no default outbound access: this rule is the instances' only way out (apt, git).
resource "azurerm_lb_outbound_rule" "egress" {
  name                     = "egress"
  loadbalancer_id          = azurerm_lb.this.id
  protocol                 = "All"
  backend_address_pool_id  = azurerm_lb_backend_address_pool.this.id
  allocated_outbound_ports = var.outbound_ports_per_instance

  frontend_ip_configuration {
    name = "public"
  }

  lifecycle {
    precondition {
      condition     = var.instances * var.outbound_ports_per_instance <= local.snat_ports_per_frontend_ip
      error_message = "instances x outbound_ports_per_instance exceeds the 64,000 SNAT ports of the one frontend IP: lower outbound_ports_per_instance or instances."
    }
  }
}

resource "azurerm_linux_virtual_machine_scale_set" "this" {
  name                = var.name
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = var.vm_size
  instances           = var.instances
  tags                = var.tags

  admin_username                  = var.admin_username
  disable_password_authentication = true

  admin_ssh_key {
    username   = var.admin_username
    public_key = var.admin_ssh_public_key
  }

  custom_data = var.custom_data

  extension_operations_enabled = false
  encryption_at_host_enabled   = var.encryption_at_host_enabled
  secure_boot_enabled          = var.trusted_launch_enabled
  vtpm_enabled                 = var.trusted_launch_enabled

  identity {
    type = "SystemAssigned"
  }

  source_image_reference {
    publisher = var.image.publisher
    offer     = var.image.offer
    sku       = var.image.sku
    version   = var.image.version
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = var.os_disk_storage_account_type
    disk_size_gb         = var.os_disk_size_gb
  }

  network_interface {
    name    = "primary"
    primary = true

    ip_configuration {
      name                                   = "primary"
      primary                                = true
      subnet_id                              = var.subnet_id
      load_balancer_backend_address_pool_ids = [azurerm_lb_backend_address_pool.this.id]
    }
  }

  boot_diagnostics {}

  # Model changes roll out in batches, each gated by the /readyz probe.
  upgrade_mode    = "Rolling"
  health_probe_id = azurerm_lb_probe.readyz.id

  rolling_upgrade_policy {
    max_batch_instance_percent              = 50
    max_unhealthy_instance_percent          = 50
    max_unhealthy_upgraded_instance_percent = 50
    pause_time_between_batches              = "PT1M"
  }

  automatic_instance_repair {
    enabled      = true
    grace_period = "PT30M"
  }

  # A rolling upgrade policy needs the probe to be in use by a load balancing rule first, and
  # cloud-init's first apt-get and git clone need the outbound rule to exist before any instance boots.
  depends_on = [azurerm_lb_rule.service, azurerm_lb_outbound_rule.egress]
}
