"""A BlueZ stand-in: ``org.bluez`` on a private D-Bus, serving one heart-rate strap.

The kernel here has no Bluetooth, so bluetoothd cannot run; bleak's real BlueZ backend talks to
this service instead (``DBUS_SYSTEM_BUS_ADDRESS`` points at the private bus). It implements
what bleak uses: ObjectManager, Adapter1 discovery with the UUID filter,
Device1 Connect/Disconnect, GATT services/characteristics/descriptors with ReadValue and
StartNotify, notifications as PropertiesChanged on the characteristic's Value.

Test controls (thread-safe): :meth:`advertise`, :meth:`drop_link`, :meth:`fail_next_connects`,
:meth:`crash` / :meth:`restart` (bluetoothd dying unannounced, and coming back),
:meth:`notify` (push exact bytes), :meth:`feed` (send payloads from a list at an interval while
a client is subscribed). Everything that happens is logged in :attr:`log` with the stand-in's
monotonic time, so tests can measure in stand-in time and events.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
DESC = "org.bluez.GattDescriptor1"
HCI = "/org/bluez/hci0"


def uuid16(n: int) -> str:
    return f"0000{n:04x}-0000-1000-8000-00805f9b34fb"


class BlueZStandIn:
    def __init__(self, workdir: Path, name: str = "Polar H10 A1B2C3D4", address: str = "A0:9E:1A:12:34:56",
                 location: int = 1, battery: int = 87, rssi: int = -58):
        self.dir = Path(workdir)
        self.sock = self.dir / "bus.sock"
        if len(str(self.sock)) > 100:  # a unix socket path must fit in 108 bytes
            self.sock = Path(tempfile.mkdtemp(prefix="bluez-")) / "bus.sock"
        self.bus_address = f"unix:path={self.sock}"
        self.name, self.address, self.rssi = name, address, rssi
        self.dev = f"{HCI}/dev_{address.replace(':', '_')}"
        self.location, self.battery = location, battery
        self.advertising = True
        self.connected = False
        self.resolved = False
        self.notifying = False
        self.device_known = False
        self.discovering = 0
        self.uuid_filter: list[str] = []
        self.fail_connects = 0
        self.log: list[tuple[float, str, object]] = []
        self._cond = threading.Condition()
        self._daemon: subprocess.Popen | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.bus: MessageBus | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set = set()
        hr, bat, dis = f"{self.dev}/service000a", f"{self.dev}/service0010", f"{self.dev}/service0014"
        self.hr_char = f"{hr}/char000b"
        self.gatt = {  # path -> (interface, props)
            hr: (SERVICE, {"UUID": Variant("s", uuid16(0x180D)), "Primary": Variant("b", True),
                           "Device": Variant("o", self.dev), "Includes": Variant("ao", [])}),
            self.hr_char: (CHAR, {"UUID": Variant("s", uuid16(0x2A37)), "Service": Variant("o", hr),
                                  "Flags": Variant("as", ["notify"]), "Value": Variant("ay", b""),
                                  "Notifying": Variant("b", False)}),
            f"{self.hr_char}/desc000d": (DESC, {"UUID": Variant("s", uuid16(0x2902)),
                                                "Characteristic": Variant("o", self.hr_char),
                                                "Value": Variant("ay", b"")}),
            f"{hr}/char000e": (CHAR, {"UUID": Variant("s", uuid16(0x2A38)), "Service": Variant("o", hr),
                                      "Flags": Variant("as", ["read"]), "Value": Variant("ay", b"")}),
            bat: (SERVICE, {"UUID": Variant("s", uuid16(0x180F)), "Primary": Variant("b", True),
                            "Device": Variant("o", self.dev), "Includes": Variant("ao", [])}),
            f"{bat}/char0011": (CHAR, {"UUID": Variant("s", uuid16(0x2A19)), "Service": Variant("o", bat),
                                       "Flags": Variant("as", ["read", "notify"]), "Value": Variant("ay", b""),
                                       "Notifying": Variant("b", False)}),
            dis: (SERVICE, {"UUID": Variant("s", uuid16(0x180A)), "Primary": Variant("b", True),
                            "Device": Variant("o", self.dev), "Includes": Variant("ao", [])}),
            f"{dis}/char0015": (CHAR, {"UUID": Variant("s", uuid16(0x2A29)), "Service": Variant("o", dis),
                                       "Flags": Variant("as", ["read"]), "Value": Variant("ay", b"")}),
        }
        self.values = {f"{hr}/char000e": lambda: bytes([self.location]),
                       f"{bat}/char0011": lambda: bytes([self.battery]),
                       f"{dis}/char0015": lambda: b"Polar Electro Oy"}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BlueZStandIn:
        if shutil.which("dbus-daemon") is None:
            raise RuntimeError("the BLE tests need dbus-daemon (Debian package dbus-daemon)")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "bus.conf"
        conf.write_text(BUS_CONF.format(sock=self.sock))
        self._daemon = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            if self.sock.exists():
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("private dbus-daemon did not start")
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="bluez-standin", daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._setup(), self.loop)
        fut.result(10)
        return self

    def _run(self, ready) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _setup(self) -> None:
        self.bus = await MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM).connect()
        self.bus.add_message_handler(self._handle)
        self._spawn(self._advertiser())
        await self.bus.request_name("org.bluez")

    def stop(self) -> None:
        """Announce the strap gone (as bluetoothd would), then stop the service and the bus."""
        if self.loop is not None and self.loop.is_running():
            async def _bye():
                if self.connected:
                    self._lose_link("stand-in stopping")
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.sleep(0.05)
                self.bus.disconnect()
            try:
                asyncio.run_coroutine_threadsafe(_bye(), self.loop).result(5)
            except Exception:  # noqa: BLE001 — tearing down
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
            self.loop = None
        if self._daemon is not None:
            self._daemon.terminate()
            self._daemon.wait(5)
            self._daemon = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def env(self) -> dict:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}

    # ------------------------------------------------------------------ log
    def _log(self, what: str, data: object = None) -> None:
        with self._cond:
            self.log.append((time.monotonic(), what, data))
            self._cond.notify_all()

    def events(self, what: str) -> list[tuple[float, object]]:
        with self._cond:
            return [(t, d) for t, w, d in self.log if w == what]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # ------------------------------------------------------------------ controls (any thread)
    def _call(self, fn, *args):
        async def _do():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(_do(), self.loop).result(5)

    def advertise(self, on: bool) -> None:
        def _set(v):
            self.advertising = v
            self._log("advertise", v)
        self._call(_set, on)

    def drop_link(self) -> None:
        self._call(self._lose_link, "link lost")

    def crash(self) -> None:
        """bluetoothd dies: its bus connection closes and nothing is announced (clients are left
        believing the link is up)."""
        async def _do():
            self.connected = self.resolved = self.notifying = False
            self.discovering = 0
            self.bus.disconnect()
            self._log("crash")
        asyncio.run_coroutine_threadsafe(_do(), self.loop).result(5)

    def restart(self) -> None:
        """bluetoothd starts again and announces its adapter and known devices, none connected."""
        async def _do():
            self.bus = await MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM).connect()
            self.bus.add_message_handler(self._handle)
            await self.bus.request_name("org.bluez")
            self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}",
                                          [HCI, {ADAPTER: self._adapter_props()}]))
            if self.device_known:
                self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}",
                                              [self.dev, {DEVICE: self._device_props()}]))
            self._log("restart")
        asyncio.run_coroutine_threadsafe(_do(), self.loop).result(5)

    def fail_next_connects(self, n: int) -> None:
        def _set(k):
            self.fail_connects = k
        self._call(_set, n)

    def notify(self, data: bytes) -> bool:
        """Push exact bytes as a 0x2A37 notification; False when no client is subscribed."""
        return self._call(self._notify, bytes(data))

    def feed(self, payloads: Iterable[bytes], interval: float = 0.05) -> None:
        """Send ``payloads`` in order, one per ``interval``, only while a client is subscribed."""
        it = iter(payloads)

        async def _feed():
            nxt = None
            while True:
                await asyncio.sleep(interval)
                if not self.notifying:
                    continue
                if nxt is None:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                if self._notify(nxt):
                    nxt = None
        asyncio.run_coroutine_threadsafe(self._spawn_async(_feed()), self.loop).result(5)

    async def _spawn_async(self, coro):
        self._spawn(coro)

    # ------------------------------------------------------------------ behaviour (loop thread)
    def _spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _send(self, msg: Message) -> None:
        self.bus.send(msg)

    def _changed(self, path: str, iface: str, props: dict) -> None:
        self._send(Message.new_signal(path, PROPS, "PropertiesChanged", "sa{sv}as", [iface, props, []]))

    def _device_props(self) -> dict:
        return {
            "Address": Variant("s", self.address), "AddressType": Variant("s", "public"),
            "Name": Variant("s", self.name), "Alias": Variant("s", self.name),
            "Adapter": Variant("o", HCI), "UUIDs": Variant("as", [uuid16(0x180D), uuid16(0x180F), uuid16(0x180A)]),
            "RSSI": Variant("n", self.rssi), "TxPower": Variant("n", 0),
            "ManufacturerData": Variant("a{qv}", {0x006B: Variant("ay", b"\x00\x00\x00")}),
            "ServiceData": Variant("a{sv}", {}),
            "Connected": Variant("b", self.connected), "ServicesResolved": Variant("b", self.resolved),
            "Paired": Variant("b", False), "Bonded": Variant("b", False), "Trusted": Variant("b", False),
            "Blocked": Variant("b", False), "LegacyPairing": Variant("b", False),
        }

    def _adapter_props(self) -> dict:
        return {"Address": Variant("s", "00:1A:7D:DA:71:13"), "AddressType": Variant("s", "public"),
                "Name": Variant("s", "stand-in"), "Alias": Variant("s", "stand-in"),
                "Powered": Variant("b", True), "Discoverable": Variant("b", False),
                "Discovering": Variant("b", self.discovering > 0),
                "UUIDs": Variant("as", []), "Roles": Variant("as", ["central", "peripheral"])}

    def _gatt_objects(self) -> dict:
        return {p: {i: dict(props)} for p, (i, props) in self.gatt.items()}

    def _managed(self) -> dict:
        objs = {HCI: {ADAPTER: self._adapter_props()}}
        if self.device_known:
            objs[self.dev] = {DEVICE: self._device_props()}
        if self.connected and self.resolved:
            objs.update(self._gatt_objects())
        return objs

    def _filter_ok(self) -> bool:
        if not self.uuid_filter:
            return True
        return uuid16(0x180D) in [u.lower() for u in self.uuid_filter]

    async def _advertiser(self) -> None:
        k = 0
        while True:
            await asyncio.sleep(0.1)
            if not (self.discovering and self.advertising and not self.connected and self._filter_ok()):
                continue
            k += 1
            if not self.device_known:
                self.device_known = True
                self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}",
                                              [self.dev, {DEVICE: self._device_props()}]))
            else:
                self._changed(self.dev, DEVICE, {"RSSI": Variant("n", self.rssi - (k % 2))})
            self._log("advertised")

    def _notify(self, data: bytes) -> bool:
        if not (self.connected and self.notifying):
            self._log("notify-dropped", data)
            return False
        self._changed(self.hr_char, CHAR, {"Value": Variant("ay", data)})
        self._log("notify", data)
        return True

    def _lose_link(self, why: str) -> None:
        if not self.connected:
            return
        self.notifying = False
        self.resolved = False
        self._changed(self.dev, DEVICE, {"ServicesResolved": Variant("b", False)})
        for p, (i, _) in sorted(self.gatt.items(), reverse=True):
            self._send(Message.new_signal("/", OM, "InterfacesRemoved", "oas", [p, [i]]))
        self.connected = False
        self._changed(self.dev, DEVICE, {"Connected": Variant("b", False)})
        self._log("disconnect", why)

    async def _connect(self, msg: Message) -> None:
        await asyncio.sleep(0.02)
        if self.fail_connects > 0:
            self.fail_connects -= 1
            self._log("connect-failed")
            self._send(Message.new_error(msg, "org.bluez.Error.Failed", "Page Timeout"))
            return
        if not self.advertising:
            self._log("connect-failed", "not advertising")
            self._send(Message.new_error(msg, "org.bluez.Error.Failed", "Page Timeout"))
            return
        if not self.connected:
            self.connected = True
            self._changed(self.dev, DEVICE, {"Connected": Variant("b", True)})
        self._send(Message.new_method_return(msg))
        await asyncio.sleep(0.02)
        for p, objs in self._gatt_objects().items():
            self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}", [p, objs]))
        self.resolved = True
        self._changed(self.dev, DEVICE, {"ServicesResolved": Variant("b", True)})
        self._log("connect")

    def _handle(self, msg: Message):
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        iface, member, path = msg.interface, msg.member, msg.path
        if iface == OM and member == "GetManagedObjects":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._managed()])
        if iface == PROPS and member == "GetAll":
            objs = self._managed().get(path, {})
            return Message.new_method_return(msg, "a{sv}", [objs.get(msg.body[0], {})])
        if iface == PROPS and member == "Get":
            objs = self._managed().get(path, {})
            v = objs.get(msg.body[0], {}).get(msg.body[1])
            if v is None:
                return Message.new_error(msg, "org.freedesktop.DBus.Error.InvalidArgs", "no such property")
            return Message.new_method_return(msg, "v", [v])
        if iface == ADAPTER and path == HCI:
            if member == "SetDiscoveryFilter":
                self.uuid_filter = list(msg.body[0].get("UUIDs", Variant("as", [])).value)
                return Message.new_method_return(msg)
            if member == "GetDiscoveryFilters":
                return Message.new_method_return(msg, "as", [["UUIDs", "RSSI", "Transport", "DuplicateData"]])
            if member == "StartDiscovery":
                self.discovering += 1
                self._log("scan-start")
                if self.discovering == 1:
                    self._changed(HCI, ADAPTER, {"Discovering": Variant("b", True)})
                return Message.new_method_return(msg)
            if member == "StopDiscovery":
                if self.discovering == 0:
                    return Message.new_error(msg, "org.bluez.Error.NotReady", "not discovering")
                self.discovering -= 1
                self._log("scan-stop")
                if self.discovering == 0:
                    self._changed(HCI, ADAPTER, {"Discovering": Variant("b", False)})
                return Message.new_method_return(msg)
        if iface == DEVICE and path == self.dev:
            if member == "Connect":
                self._log("connect-call")
                self._spawn(self._connect(msg))
                return True
            if member == "Disconnect":
                self._lose_link("client disconnect")
                return Message.new_method_return(msg)
        if iface == CHAR and path in self.gatt:
            if not self.connected:
                return Message.new_error(msg, "org.bluez.Error.NotConnected", "Not Connected")
            if member == "ReadValue":
                fn = self.values.get(path)
                if fn is None:
                    return Message.new_error(msg, "org.bluez.Error.NotPermitted", "Read not permitted")
                return Message.new_method_return(msg, "ay", [fn()])
            if member == "StartNotify":
                if path == self.hr_char:
                    self.notifying = True
                    self._changed(path, CHAR, {"Notifying": Variant("b", True)})
                    self._log("subscribe")
                return Message.new_method_return(msg)
            if member == "StopNotify":
                if path == self.hr_char:
                    self.notifying = False
                return Message.new_method_return(msg)
        if msg.destination == "org.bluez" or (path or "").startswith("/org/bluez"):
            return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod",
                                     f"stand-in has no {iface}.{member} on {path}")
        return None
