#!/usr/bin/env bash
# Grant a Microsoft Graph application permission (default DeviceManagementConfiguration.ReadWrite.All)
# to the certstate function's user-assigned managed identity.
#
# Use it when the Bicep deployment did not grant it: grantGraphAppRole=false, a national cloud (the
# Graph Bicep extension is public-cloud only), or a deployer without Graph admin rights. Whoever runs
# it needs a role that may grant Microsoft Graph application permissions, e.g. Privileged Role
# Administrator (or a workload identity with AppRoleAssignment.ReadWrite.All + Application.Read.All).
# Needs: Azure CLI (`az login` into the right cloud and tenant). Idempotent: an existing assignment
# is reported and left alone.
#
# Usage:
#   grant-graph-app-role.sh --principal-id <object id of the managed identity>
#   grant-graph-app-role.sh --resource-group <rg> [--identity-name <name>]
#     (without --identity-name: the one identity tagged application=certstate; several are an error)
# Options:
#   --role <value>            Graph app role value (default DeviceManagementConfiguration.ReadWrite.All)
#   --graph-endpoint <url>    Graph endpoint; default: the current az cloud's (set
#                             https://dod-graph.microsoft.us for US Gov DoD)
#   --dry-run                 resolve everything, print the request, change nothing
# With azd: --principal-id "$(azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID)"
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
role="DeviceManagementConfiguration.ReadWrite.All"
principal_id=""
resource_group=""
identity_name=""
graph_endpoint=""
dry_run=false

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
  echo "error: $*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --principal-id) principal_id="${2:-}"; shift 2 ;;
    --resource-group) resource_group="${2:-}"; shift 2 ;;
    --identity-name) identity_name="${2:-}"; shift 2 ;;
    --role) role="${2:-}"; shift 2 ;;
    --graph-endpoint) graph_endpoint="${2:-}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

guid_re='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
[[ "$role" =~ ^[A-Za-z0-9.]+$ ]] || die "--role must look like Resource.Permission.Scope: $role"

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is required"

if [[ -z "$principal_id" ]]; then
  [[ -n "$resource_group" ]] || die "give --principal-id, or --resource-group (and optionally --identity-name)"
  if [[ -n "$identity_name" ]]; then
    principal_id="$(az identity show --resource-group "$resource_group" --name "$identity_name" \
      --query principalId --output tsv)"
  else
    # The template tags its identity application=certstate. Several environments (azd env) in one
    # resource group give several such identities: never guess which one is meant.
    candidates="$(az identity list --resource-group "$resource_group" \
      --query "[?tags.application=='certstate'].[principalId, name, tags.\"azd-env-name\"]" --output tsv)"
    count="$(grep -c . <<<"$candidates" || true)"
    ((count > 0)) || die "no identity tagged application=certstate in resource group $resource_group"
    if ((count > 1)); then
      {
        echo "error: $count certstate identities in resource group $resource_group; which one is meant?"
        echo "  principal id                          name (azd environment)"
        while IFS=$'\t' read -r id name env; do
          echo "  $id  $name (${env:-no azd-env-name tag})"
        done <<<"$candidates"
        echo "Pass the exact one: --principal-id <principal id>, or --identity-name <name>."
      } >&2
      exit 1
    fi
    principal_id="$(cut -f1 <<<"$candidates")"
  fi
fi
[[ "$principal_id" =~ $guid_re ]] || die "no managed identity principal id found (got '${principal_id}')"

if [[ -z "$graph_endpoint" ]]; then
  graph_endpoint="$(az cloud show --query endpoints.microsoftGraphResourceId --output tsv)"
fi
graph_endpoint="${graph_endpoint%/}"
[[ "$graph_endpoint" =~ ^https://[A-Za-z0-9.-]+$ ]] || die "unexpected Graph endpoint: $graph_endpoint"

graph() {
  az rest --resource "$graph_endpoint" --output tsv "$@"
}

graph_sp_id="$(graph --method get \
  --url "$graph_endpoint/v1.0/servicePrincipals(appId='$GRAPH_APP_ID')?\$select=id" --query id)"
[[ "$graph_sp_id" =~ $guid_re ]] || die "could not read the Microsoft Graph service principal"

app_role_id="$(graph --method get \
  --url "$graph_endpoint/v1.0/servicePrincipals/$graph_sp_id?\$select=appRoles" \
  --query "appRoles[?value=='$role' && contains(allowedMemberTypes, 'Application')].id | [0]")"
[[ "$app_role_id" =~ $guid_re ]] || die "Microsoft Graph has no application permission named $role"

existing="$(graph --method get \
  --url "$graph_endpoint/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
  --query "value[?appRoleId=='$app_role_id' && resourceId=='$graph_sp_id'].id | [0]")"
if [[ -n "$existing" && "$existing" != "None" ]]; then
  echo "Already granted: $role to $principal_id (assignment $existing)."
  exit 0
fi

body="{\"principalId\":\"$principal_id\",\"resourceId\":\"$graph_sp_id\",\"appRoleId\":\"$app_role_id\"}"
url="$graph_endpoint/v1.0/servicePrincipals/$graph_sp_id/appRoleAssignedTo"
if [[ "$dry_run" == true ]]; then
  echo "Dry run: would POST $url"
  echo "$body"
  exit 0
fi

assignment_id="$(graph --method post --url "$url" \
  --headers "Content-Type=application/json" --body "$body" --query id)"
echo "Granted $role to $principal_id (assignment $assignment_id)."
echo "Tokens already issued keep their old roles, and managed identity tokens are cached by the platform:"
echo "if the app already fetched a Graph token, the permission can take hours to show (graphForbidden until then)."
