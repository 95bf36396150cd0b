# The only module that builds `machine` objects, from a board profile
# (hardware/boards/*.json, copied to the board as board.json). Everything
# else gets plain callables, so it runs in the simulator and the MicroPython
# VM unchanged. The simulator passes its own `machine`; on the board it is
# the real module.


class Board:
    def __init__(self, profile, machine=None):
        if machine is None:
            import machine  # type: ignore[no-redef]
        self.machine = machine
        self.profile = profile
        self.name = profile["name"]
        pins = profile["pins"]
        Pin = machine.Pin
        r = pins["ap_relay"]
        self._relay_low = bool(r.get("active_low"))
        # value= sets the level before the pin turns into an output: the
        # access point is never energised, not even for a glitch, at boot.
        self._relay = Pin(r["pin"], Pin.OUT, value=1 if self._relay_low else 0)
        led = pins["led"]
        self._led_low = bool(led.get("active_low"))
        self._led = Pin(led["pin"], Pin.OUT, value=1 if self._led_low else 0)
        b = pins["button"]
        self._button_low = bool(b.get("active_low", True))
        pull = Pin.PULL_UP if b.get("pull") == "up" else (Pin.PULL_DOWN if b.get("pull") == "down" else None)
        if pull is None:
            self._button = Pin(b["pin"], Pin.IN)
        else:
            self._button = Pin(b["pin"], Pin.IN, pull)
        self.devices = ["button", "led", "ap_relay"]

    def set_relay(self, on):
        self._relay.value(1 if bool(on) != self._relay_low else 0)

    def relay(self):
        return bool(self._relay.value()) != self._relay_low

    def set_led(self, on):
        self._led.value(1 if bool(on) != self._led_low else 0)

    def button_pressed(self):
        return bool(self._button.value()) != self._button_low

    def on_button_edge(self, handler):
        Pin = self.machine.Pin
        self._button.irq(handler=handler, trigger=Pin.IRQ_FALLING | Pin.IRQ_RISING)

    def reset_cause(self):
        try:
            return {0: "power_on", 1: "power_on", 2: "hard", 3: "watchdog", 4: "deepsleep", 5: "soft"}.get(
                self.machine.reset_cause(), "unknown")
        except AttributeError:
            return "unknown"

    def reset(self):
        self.machine.reset()

    def start_uplink(self):
        """Bring up the board's own uplink: wired Ethernet by default (no
        radio in the classroom); a Wi-Fi station only on profiles that say so."""
        import network  # type: ignore[import-not-found]

        Pin = self.machine.Pin
        lan = self.profile.get("lan")
        if self.profile.get("uplink") == "lan" and lan:
            nic = network.LAN(
                mdc=Pin(lan["mdc"]),  # pyright: ignore[reportCallIssue]  # stubs lack the ESP32 LAN keywords
                mdio=Pin(lan["mdio"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                power=Pin(lan["power"]) if lan.get("power") is not None else None,  # pyright: ignore[reportCallIssue]  # (see mdc)
                phy_type=getattr(network, "PHY_" + lan["phy"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                phy_addr=lan["phy_addr"],  # pyright: ignore[reportCallIssue]  # (see mdc)
                # The PHY's 50 MHz clock comes from the ESP32 (GPIO17 out on the ESP32-POE).
                ref_clk=Pin(lan["ref_clk"]) if lan.get("ref_clk") is not None else None,  # pyright: ignore[reportCallIssue]  # (see mdc)
                ref_clk_mode=Pin.OUT if lan.get("ref_clk_mode") == "out" else Pin.IN,  # pyright: ignore[reportCallIssue]  # (see mdc)
            )
            nic.active(True)
            return nic
        raise OSError("uplink %r not supported by this firmware yet" % self.profile.get("uplink"))
