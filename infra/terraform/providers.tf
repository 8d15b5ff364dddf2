# This directory is also the deployable root configuration, so it configures azurerm here.
# The subscription comes from ARM_SUBSCRIPTION_ID (see README.md).
provider "azurerm" {
  features {}
}
