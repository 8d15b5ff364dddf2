resource "azurerm_resource_group" "this" {
  name     = local.resource_group_name
  location = var.location
  tags     = local.tags
}

resource "azurerm_virtual_network" "this" {
  name                = "vnet-${var.name_prefix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = var.vnet_address_space
  tags                = local.tags
}

resource "azurerm_subnet" "this" {
  name                 = "snet-${var.name_prefix}"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.subnet_address_prefix]

  # Egress goes through the VM's public IP or the load balancer's outbound rule, never implicit access.
  default_outbound_access_enabled = false
}

resource "azurerm_network_security_group" "this" {
  name                = "nsg-${var.name_prefix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  security_rule {
    name                       = "AllowSshFromAdminCidrs"
    description                = "SSH for administrators only."
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "22"
    source_address_prefixes    = var.admin_source_cidrs
    destination_address_prefix = "VirtualNetwork"
  }

  dynamic "security_rule" {
    for_each = local.public_inbound_rules
    content {
      name                       = security_rule.key
      description                = security_rule.value.description
      priority                   = security_rule.value.priority
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_port_range          = "*"
      destination_port_range     = tostring(security_rule.value.port)
      source_address_prefixes    = security_rule.value.sources
      destination_address_prefix = "VirtualNetwork"
    }
  }
}

resource "azurerm_subnet_network_security_group_association" "this" {
  subnet_id                 = azurerm_subnet.this.id
  network_security_group_id = azurerm_network_security_group.this.id
}

resource "azurerm_public_ip" "this" {
  name                = "pip-${var.name_prefix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  domain_name_label   = var.dns_label
  tags                = local.tags
}

data "cloudinit_config" "vm" {
  gzip          = true
  base64_encode = true

  part {
    filename     = "cloud-init.yaml"
    content_type = "text/cloud-config"
    content      = templatefile("${path.module}/cloud-init.yaml.tftpl", local.cloud_init_vm_vars)
  }
}

data "cloudinit_config" "scale_set" {
  gzip          = true
  base64_encode = true

  part {
    filename     = "cloud-init.yaml"
    content_type = "text/cloud-config"
    content      = templatefile("${path.module}/cloud-init.yaml.tftpl", local.cloud_init_scale_set_vars)
  }
}

resource "azurerm_network_interface" "this" {
  #checkov:skip=CKV_AZURE_119:The single deploy VM is the public service endpoint; inbound traffic is limited by the subnet NSG to 22 from admin_source_cidrs, 6666 and 443 from service_source_cidrs, and 80 for ACME challenges when HTTPS is on.
  count = local.single_vm_enabled ? 1 : 0

  name                = "nic-${var.name_prefix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  ip_configuration {
    name                          = "primary"
    subnet_id                     = azurerm_subnet.this.id
    private_ip_address_allocation = "Dynamic"
    public_ip_address_id          = azurerm_public_ip.this.id
  }
}

resource "azurerm_linux_virtual_machine" "this" {
  count = local.single_vm_enabled ? 1 : 0

  name                  = local.vm_name
  location              = azurerm_resource_group.this.location
  resource_group_name   = azurerm_resource_group.this.name
  size                  = var.vm_size
  network_interface_ids = [azurerm_network_interface.this[0].id]
  tags                  = local.tags

  admin_username                  = var.admin_username
  disable_password_authentication = true

  admin_ssh_key {
    username   = var.admin_username
    public_key = trimspace(var.admin_ssh_public_key)
  }

  custom_data = data.cloudinit_config.vm.rendered

  provision_vm_agent         = true
  allow_extension_operations = false

  encryption_at_host_enabled = var.encryption_at_host_enabled
  secure_boot_enabled        = var.trusted_launch_enabled
  vtpm_enabled               = var.trusted_launch_enabled

  identity {
    type = "SystemAssigned"
  }

  os_disk {
    name                 = "osdisk-${var.name_prefix}"
    caching              = "ReadWrite"
    storage_account_type = var.os_disk_storage_account_type
    disk_size_gb         = var.os_disk_size_gb
  }

  source_image_reference {
    publisher = var.image.publisher
    offer     = var.image.offer
    sku       = var.image.sku
    version   = var.image.version
  }

  # Managed storage: no storage account to create or secure.
  boot_diagnostics {}

  lifecycle {
    # custom_data carries the one-hour registration token. Without this, every apply with a fresh
    # token would replace the VM; rebuild on purpose with -replace instead (see README.md).
    ignore_changes = [custom_data]
  }
}

module "scale_set" {
  source = "./modules/scale-set"
  count  = var.scale_set.enabled ? 1 : 0

  name                         = "vmss-${var.name_prefix}"
  location                     = azurerm_resource_group.this.location
  resource_group_name          = azurerm_resource_group.this.name
  subnet_id                    = azurerm_subnet.this.id
  public_ip_address_id         = azurerm_public_ip.this.id
  instances                    = var.scale_set.instances
  vm_size                      = var.vm_size
  admin_username               = var.admin_username
  admin_ssh_public_key         = trimspace(var.admin_ssh_public_key)
  custom_data                  = data.cloudinit_config.scale_set.rendered
  image                        = var.image
  os_disk_size_gb              = var.os_disk_size_gb
  os_disk_storage_account_type = var.os_disk_storage_account_type
  encryption_at_host_enabled   = var.encryption_at_host_enabled
  trusted_launch_enabled       = var.trusted_launch_enabled
  service_port                 = local.service_port
  outbound_ports_per_instance  = var.scale_set.outbound_ports_per_instance
  tags                         = local.tags

  depends_on = [azurerm_subnet_network_security_group_association.this]
}
