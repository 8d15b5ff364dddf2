output "resource_group_name" {
  description = "Resource group of the cluster, registry and network."
  value       = azurerm_resource_group.this.name
}

output "cluster_name" {
  description = "Name of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "cluster_id" {
  description = "Resource id of the AKS cluster."
  value       = azurerm_kubernetes_cluster.this.id
}

output "oidc_issuer_url" {
  description = "OIDC issuer URL, for federated credentials of workload identities."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}

output "kubelet_identity_object_id" {
  description = "Object id of the kubelet identity (holds AcrPull on the registry)."
  value       = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
}

output "node_resource_group" {
  description = "Resource group AKS manages for the nodes."
  value       = azurerm_kubernetes_cluster.this.node_resource_group
}

output "acr_name" {
  description = "Name of the container registry (for `az acr login --name`)."
  value       = azurerm_container_registry.this.name
}

output "acr_login_server" {
  description = "Login server of the container registry; the image becomes <acr_login_server>/inference-service:<git sha>."
  value       = azurerm_container_registry.this.login_server
}

output "acr_id" {
  description = "Resource id of the registry, the scope for an AcrPush role assignment to the CI identity."
  value       = azurerm_container_registry.this.id
}

output "get_credentials_command" {
  description = "Command that writes a kubeconfig for this cluster (Entra ID login through kubelogin)."
  value       = "az aks get-credentials --resource-group ${azurerm_resource_group.this.name} --name ${azurerm_kubernetes_cluster.this.name} && kubelogin convert-kubeconfig -l azurecli"
}
