"""Public or private network access, read from the templates: one parameter, public by default; off,
it brings the VNet, the private endpoints and DNS zones it needs, and Flex VNet integration."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.bicep import body, condition, decorator, module, param_default, parse, render, resource, text

MAIN = "main.bicep"
STORAGE = "modules/storage.bicep"
FUNCTION = "modules/functionapp.bicep"
NETWORK = "modules/network.bicep"
ENDPOINTS = "modules/privateendpoints.bicep"

PRIVATE_MODULES = ("network", "storageEndpoints", "functionEndpoint")


def _params(symbol: str) -> dict[str, str]:
    return {name: render(value) for name, value in body(module(symbol))["params"].items()}


def _zones() -> dict[str, str]:
    """groupId -> private DNS zone name (an expression), from network.bicep."""
    rows = parse(NETWORK)["variables"]["privateDnsZones"]["value"]
    return {row["groupId"]: render(row["zone"]) for row in rows}


def test_public_by_default_and_one_parameter_turns_it_off() -> None:
    declaration = parse(MAIN)["parameters"]["publicNetworkAccess"]
    assert decorator(declaration, "allowed") == ["Enabled", "Disabled"]
    assert param_default(MAIN, "publicNetworkAccess") == "Enabled"
    assert "var privateNetworking = publicNetworkAccess == 'Disabled'" in text(MAIN)
    for symbol in ("storage", "functionApp"):
        assert _params(symbol)["publicNetworkAccess"] == "publicNetworkAccess", symbol
    for symbol in PRIVATE_MODULES:
        assert condition(module(symbol)) == "privateNetworking", symbol


def test_the_storage_account_refuses_public_traffic_when_private() -> None:
    props = body(resource(STORAGE, "account"))["properties"]
    assert props["publicNetworkAccess"] == "publicNetworkAccess"
    source = text(STORAGE)
    assert "defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'" in source
    assert "bypass: publicNetworkAccess == 'Enabled' ? 'AzureServices' : 'None'" in source
    assert param_default(STORAGE, "publicNetworkAccess") == "Enabled"


def test_the_app_refuses_public_inbound_and_sends_outbound_through_the_vnet_when_private() -> None:
    props = body(resource(FUNCTION, "site"))["properties"]
    assert props["publicNetworkAccess"] == "publicNetworkAccess"
    # Flex VNet integration: the site's virtualNetworkSubnetId (Flex has no vnetRouteAllEnabled; all
    # outbound traffic goes through the subnet).
    assert "virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId" in text(FUNCTION)
    assert param_default(FUNCTION, "virtualNetworkSubnetId") == ""
    assert "virtualNetworkSubnetId: privateNetworking ? network!.outputs.functionSubnetId : ''" in text(MAIN)
    # The storage endpoints and their DNS records exist before the host first reaches storage.
    assert body(module("functionApp"))["dependsOn"] == ["rbac", "storageEndpoints"]


def test_the_vnet_has_a_delegated_integration_subnet_and_an_endpoint_subnet() -> None:
    vnet = body(resource(NETWORK, "vnet"))
    subnets = {subnet["name"]: subnet["properties"] for subnet in vnet["properties"]["subnets"]}
    assert set(subnets) == {"functionSubnetName", "privateEndpointSubnetName"}
    integration = subnets["functionSubnetName"]
    assert [d["properties"]["serviceName"] for d in integration["delegations"]] == ["Microsoft.App/environments"]
    assert integration["addressPrefix"] == "functionSubnetPrefix"
    assert integration["defaultOutboundAccess"] is True  # Graph and Entra ID are on the internet
    assert subnets["privateEndpointSubnetName"]["addressPrefix"] == "privateEndpointSubnetPrefix"
    for name, subnet in subnets.items():
        nsg_symbol = render(subnet["networkSecurityGroup"]["id"]).removesuffix(".id")
        assert resource(NETWORK, nsg_symbol)["type"] == "Microsoft.Network/networkSecurityGroups", name
    outputs = parse(NETWORK)["outputs"]
    assert outputs["functionSubnetId"]["value"] == "${vnet.id}/subnets/${functionSubnetName}"
    assert outputs["privateEndpointSubnetId"]["value"] == "${vnet.id}/subnets/${privateEndpointSubnetName}"
    assert _params("network") == {
        "name": "vnet-${namePrefix}-${resourceToken}",
        "location": "location",
        "tags": "allTags",
        "addressPrefix": "virtualNetworkAddressPrefix",
        "functionSubnetPrefix": "functionSubnetPrefix",
        "privateEndpointSubnetPrefix": "privateEndpointSubnetPrefix",
    }


def test_private_dns_zones_for_blob_queue_table_and_the_app_in_every_cloud() -> None:
    assert _zones() == {
        "blob": "privatelink.blob.${environment().suffixes.storage}",
        "queue": "privatelink.queue.${environment().suffixes.storage}",
        "table": "privatelink.table.${environment().suffixes.storage}",
        "sites": "sitesPrivateDnsZones[environment().name]",
    }
    assert parse(NETWORK)["variables"]["sitesPrivateDnsZones"]["value"] == {
        "AzureCloud": "privatelink.azurewebsites.net",
        "AzureUSGovernment": "privatelink.azurewebsites.us",
        "AzureChinaCloud": "privatelink.chinacloudsites.cn",
    }
    zones = resource(NETWORK, "zones")
    assert zones["config"]["loop_type"]["detail"] == {"item_name": "zone", "array_name": "privateDnsZones"}
    assert body(zones)["location"] == "global"
    links = body(resource(NETWORK, "zoneLinks"))
    assert render(links["parent"]) == "zones[i]"
    assert links["properties"]["registrationEnabled"] is False
    assert render(links["properties"]["virtualNetwork"]["id"]) == "vnet.id"


def test_private_endpoints_for_storage_blob_queue_table_and_the_app() -> None:
    storage = _params("storageEndpoints")
    assert (storage["serviceId"], json.loads(storage["groupIds"])) == ("storage.outputs.id", ["blob", "queue", "table"])
    app = _params("functionEndpoint")
    assert (app["serviceId"], json.loads(app["groupIds"])) == ("functionApp.outputs.id", ["sites"])
    for params in (storage, app):
        assert params["subnetId"] == "network.outputs.privateEndpointSubnetId"
        assert params["privateDnsZoneIds"] == "network.outputs.privateDnsZoneIds"
        # Every endpoint finds its zone.
        assert set(json.loads(params["groupIds"])) <= set(_zones())


def test_each_endpoint_connects_one_group_and_registers_in_its_zone() -> None:
    endpoints = resource(ENDPOINTS, "endpoints")
    assert endpoints["type"] == "Microsoft.Network/privateEndpoints"
    assert endpoints["config"]["loop_type"]["detail"] == {"item_name": "groupId", "array_name": "groupIds"}
    props = body(endpoints)["properties"]
    assert render(props["subnet"]["id"]) == "subnetId"
    [connection] = props["privateLinkServiceConnections"]
    assert connection["properties"] == {"privateLinkServiceId": "serviceId", "groupIds": ["groupId"]}

    groups = body(resource(ENDPOINTS, "zoneGroups"))
    assert render(groups["parent"]) == "endpoints[i]"
    [config] = groups["properties"]["privateDnsZoneConfigs"]
    assert config["name"] == "groupId"
    assert render(config["properties"]["privateDnsZoneId"]) == "privateDnsZoneIds[groupId]"
    # Each group's id is the id of its own zone: zones[i] is the zone of privateDnsZones[i].
    zone_ids: dict[str, Any] = parse(NETWORK)["outputs"]["privateDnsZoneIds"]["value"]
    assert {group: render(value) for group, value in zone_ids.items()} == {
        group: f"zones[{i}].id" for i, group in enumerate(_zones())
    }


def test_no_logic_app_front_door_on_a_private_account() -> None:
    """A Consumption Logic App's queue connector runs outside the VNet, where a private account refuses it."""
    assert "var logicAppEnabled = deployLogicApp && !privateNetworking" in text(MAIN)
    assert condition(module("logicApp")) == "logicAppEnabled"
    outputs = parse(MAIN)["outputs"]
    for name in ("LOGIC_APP_NAME", "LOGIC_APP_ENDPOINT"):
        assert render(outputs[name]["value"]["operator"]["operands"]["condition"]) == "logicAppEnabled", name
