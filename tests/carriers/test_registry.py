"""The carrier registry: built-ins, plugins through entry points, and clear failures."""
from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

from connector.carriers import registry
from connector.carriers.registry import CarrierPluginWarning, UnknownCarrier, available, get_backend
from connector.carriers.sandbox import SandboxBackend
from connector.carriers.selfship import SelfShipBackend
from connector.cli import main
from connector.returns.ports import CarrierCapabilities, CarrierNotSupported


class ParcelPigeonBackend(SelfShipBackend):
    """A plugin's backend (a subclass is enough for the registry to accept it)."""

    key = "pigeon"
    name = "Parcel Pigeon"
    capabilities = CarrierCapabilities(tracking=True)


@pytest.fixture
def plugins(monkeypatch):
    """Install fake entry points in the group; the registry re-reads them."""
    module = types.ModuleType("fake_carrier_plugin")
    module.ParcelPigeonBackend = ParcelPigeonBackend
    module.not_a_class = object()
    monkeypatch.setitem(sys.modules, "fake_carrier_plugin", module)

    def install(*specs: tuple[str, str]):
        eps = [EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP) for name, value in specs]
        monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else [])
        registry.refresh()

    yield install
    registry.refresh()


def test_builtins_are_available_through_the_installed_entry_points():
    """pyproject.toml declares the built-ins and the shipped carriers in the group; the installed
    package must expose them."""
    from importlib.metadata import entry_points

    from connector.carriers.easypost_backend import EasyPostBackend
    from connector.carriers.karrio_backend import KarrioBackend
    from connector.carriers.sendcloud import SendcloudBackend
    declared = {ep.name: ep.value for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert declared["sandbox"] == "connector.carriers.sandbox:SandboxBackend"
    assert declared["selfship"] == "connector.carriers.selfship:SelfShipBackend"
    assert available() == {"easypost": EasyPostBackend, "karrio": KarrioBackend, "sandbox": SandboxBackend,
                           "selfship": SelfShipBackend, "sendcloud": SendcloudBackend}


def test_builtins_are_there_even_without_entry_points(plugins):
    """A source checkout that was never pip-installed still has its own carriers."""
    plugins()
    assert set(available()) == {"sandbox", "selfship"}


def test_plugin_from_an_entry_point_is_listed_and_built(plugins):
    plugins(("pigeon", "fake_carrier_plugin:ParcelPigeonBackend"))
    assert available()["pigeon"] is ParcelPigeonBackend
    backend = get_backend("pigeon", {"api_key": "k"})
    assert isinstance(backend, ParcelPigeonBackend)
    assert backend.settings == {"api_key": "k"}


def test_get_backend_passes_settings(tmp_path):
    backend = get_backend("sandbox", {"data_dir": tmp_path})
    assert isinstance(backend, SandboxBackend)
    assert backend.data_dir == tmp_path


def test_unknown_key_names_the_known_ones():
    with pytest.raises(KeyError) as caught:
        get_backend("carrier-pigeon")
    assert isinstance(caught.value, UnknownCarrier)
    assert str(caught.value) == ("unknown carrier backend 'carrier-pigeon'; known backends: "
                                 "easypost, karrio, sandbox, selfship, sendcloud")


@pytest.mark.parametrize(("value", "reason"), [
    ("missing_carrier_module:Backend", "could not be loaded"),
    ("fake_carrier_plugin:Missing", "could not be loaded"),
    ("fake_carrier_plugin:not_a_class", "is not a class"),
])
def test_broken_plugin_is_reported_and_left_out(plugins, value, reason):
    """One bad plugin must not take the app (and every other carrier) down."""
    plugins(("pigeon", value), ("sandbox", "connector.carriers.sandbox:SandboxBackend"))
    with pytest.warns(CarrierPluginWarning, match=reason):
        backends = available()
    assert set(backends) == {"sandbox", "selfship"}


def test_plugin_whose_key_differs_from_its_entry_point_is_left_out(plugins):
    """Shipments store the key: a backend reachable under another name would be lost on restart."""
    plugins(("dove", "fake_carrier_plugin:ParcelPigeonBackend"))
    with pytest.warns(CarrierPluginWarning, match="'dove' differs"):
        assert "dove" not in available()


def test_plugin_cannot_replace_a_builtin(plugins):
    impostor = type("SandboxImpostor", (ParcelPigeonBackend,), {"key": "sandbox"})
    sys.modules["fake_carrier_plugin"].SandboxImpostor = impostor
    plugins(("sandbox", "fake_carrier_plugin:SandboxImpostor"))
    with pytest.warns(CarrierPluginWarning, match="built-in"):
        assert available()["sandbox"] is SandboxBackend


def test_unsupported_operations_raise_not_supported_through_the_registry():
    with pytest.raises(CarrierNotSupported):
        get_backend("selfship").void_label("X")


def test_cli_lists_carriers_with_capabilities():
    result = CliRunner().invoke(main, ["carriers"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["key", "name", "label", "qr", "pickup", "carrier_brings_label", "void",
                                "tracking", "international", "tracking_webhook", "late_label"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["sandbox"].split()[-9:] == ["yes"] * 7 + ["no", "no"]
    assert "Ship it yourself" in rows["selfship"]
    assert rows["selfship"].split()[-9:] == ["no"] * 6 + ["yes", "no", "no"]


def test_cli_lists_plugins_too(plugins):
    plugins(("pigeon", "fake_carrier_plugin:ParcelPigeonBackend"))
    result = CliRunner().invoke(main, ["carriers"])
    assert result.exit_code == 0, result.output
    pigeon = next(line for line in result.output.splitlines() if line.startswith("pigeon"))
    assert "Parcel Pigeon" in pigeon
    assert pigeon.split()[-9:] == ["no", "no", "no", "no", "no", "yes", "no", "no", "no"]
