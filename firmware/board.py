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
        self._nic = None

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

    def uart(self, baudrate=9600):
        """The projector's serial port (8N1, non-blocking reads), or None
        when the profile wires none."""
        u = self.profile.get("uart")
        if not u:
            return None
        Pin = self.machine.Pin
        return self.machine.UART(u["id"], baudrate=baudrate, bits=8, parity=None, stop=1,
                                 tx=Pin(u["tx"]), rx=Pin(u["rx"]), timeout=0)

    def i2c(self):
        """The kit's I2C bus, or None when the profile wires none."""
        c = self.profile.get("i2c")
        if not c:
            return None
        Pin = self.machine.Pin
        return self.machine.I2C(c["id"], scl=Pin(c["scl"]), sda=Pin(c["sda"]), freq=c["freq"])

    def wdt(self, timeout_ms):
        # Once started it cannot be stopped: a hung loop resets the board, and
        # the relay comes back off at boot. ESP32: at least 1000 ms; RP2040:
        # at most 8388 ms.
        return self.machine.WDT(timeout=timeout_ms)

    def start_uplink(self, ssid=None, password=None):
        """Bring up the board's own uplink: wired Ethernet by default (no
        radio in the classroom); a Wi-Fi station only on profiles that say
        so, with `ssid`/`password` from config.json."""
        nic = self._nic
        if nic is not None:  # called again after a loss: the interface exists
            if self.profile.get("uplink") == "wlan":
                nic.connect(ssid, password)  # pyright: ignore[reportAttributeAccessIssue]  # WLAN here
            else:
                nic.active(True)
            return nic
        import network  # type: ignore[import-not-found]

        Pin = self.machine.Pin
        kind = self.profile.get("uplink")
        lan = self.profile.get("lan")
        if kind == "lan" and lan:
            nic = network.LAN(
                mdc=Pin(lan["mdc"]),  # pyright: ignore[reportCallIssue]  # stubs lack the ESP32 LAN keywords
                mdio=Pin(lan["mdio"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                power=Pin(lan["power"]) if lan.get("power") is not None else None,  # pyright: ignore[reportCallIssue]  # (see mdc)
                phy_type=getattr(network, "PHY_" + lan["phy"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                phy_addr=lan["phy_addr"],  # pyright: ignore[reportCallIssue]  # (see mdc)
                # The PHY's 50 MHz clock: from the ESP32 (GPIO17 out on the
                # ESP32-POE) or from an oscillator (GPIO0 in on the WT32-ETH01).
                ref_clk=Pin(lan["ref_clk"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                ref_clk_mode=Pin.OUT if lan["ref_clk_mode"] == "out" else Pin.IN,  # pyright: ignore[reportCallIssue]  # (see mdc)
            )
            nic.active(True)
        elif kind == "lan_spi" and lan:
            s = self.profile["spi"]
            if lan.get("rst") is not None:
                from .compat import sleep_ms

                # W5500 datasheet: RSTn low for at least 500 us, then 1 ms for its PLL.
                rst = Pin(lan["rst"], Pin.OUT, value=0)
                sleep_ms(1)
                rst.value(1)
                sleep_ms(2)
            spi = self.machine.SPI(s["id"], baudrate=s.get("baudrate", 20000000),
                                   sck=Pin(s["sck"]), mosi=Pin(s["mosi"]), miso=Pin(s["miso"]))
            nic = network.LAN(
                spi=spi,  # pyright: ignore[reportCallIssue]  # (see mdc)
                cs=Pin(lan["cs"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                int=Pin(lan["int"]),  # pyright: ignore[reportCallIssue]  # (see mdc)
                phy_type=network.PHY_W5500,  # pyright: ignore[reportCallIssue]  # (see mdc)
                phy_addr=0,  # pyright: ignore[reportCallIssue]  # (see mdc)
            )
            nic.active(True)
        elif kind == "wlan":
            if not ssid:
                raise OSError("uplink 'wlan' needs an ssid")
            nic = network.WLAN(network.STA_IF)
            nic.active(True)
            nic.connect(ssid, password)
        else:
            raise OSError("uplink %r not supported by this firmware" % kind)
        self._nic = nic
        return nic

    def uplink_up(self):
        nic = self._nic
        # The stubs' second LAN class lacks isconnected(); the ESP32 port has it.
        return nic is not None and bool(nic.isconnected())  # pyright: ignore[reportAttributeAccessIssue]
