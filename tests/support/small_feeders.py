"""Small feeders whose answers can be computed by hand, shared by the power-flow and LTUPF tests."""

from __future__ import annotations

from twin.network import Bus, Customer, Feeder, Line, LineSwitch, Source, Transformer


def two_bus_feeder(*, connection: str = "ABC") -> Feeder:
    """One customer behind one cable, every impedance a round number::

    source 11 kV, 1.02 pu, 100 MVA ──[SRC]── MV ──TR 250 kVA Dyn, 4 %/1 %── LV0 ──L1 200 m── LV1 (customer)
    """
    return Feeder(
        name="two-bus",
        buses=(Bus(id="MV", vn_kv=11.0), Bus(id="LV0", vn_kv=0.416), Bus(id="LV1", vn_kv=0.416)),
        lines=(Line(id="L1", from_bus="LV0", to_bus="LV1", length_km=0.2, r1_ohm_per_km=0.2,
                    x1_ohm_per_km=0.08, r0_ohm_per_km=0.8, x0_ohm_per_km=0.3, max_i_ka=0.25),),
        transformer=Transformer(id="TR", hv_bus="MV", lv_bus="LV0", sn_kva=250.0, vn_hv_kv=11.0, vn_lv_kv=0.416,
                                vk_percent=4.0, vkr_percent=1.0, shift_deg=30.0),
        source=Source(bus="MV", vn_kv=11.0, vm_pu=1.02, s_sc_mva=100.0, rx_ratio=0.1, x0x_ratio=1.0,
                      r0x0_ratio=0.1),
        customers=(Customer(id="C1", bus="LV1", phases=connection),),
    )


def ring_feeder() -> Feeder:
    """Two cables from the LV bus, joined at their ends by a normally open tie; S2 can also be opened::

    MV ──TR── LV0 ──S1 (switchable)── LV1 ──L2── LV2 (C2)
               └────S2 (switchable)── LV3 ┄┄TIE (normally open)┄┄ LV2
                                      (C3)
    """
    def cable(line_id: str, a: str, b: str, switch: LineSwitch) -> Line:
        return Line(id=line_id, from_bus=a, to_bus=b, length_km=0.3, r1_ohm_per_km=0.2, x1_ohm_per_km=0.08,
                    r0_ohm_per_km=0.8, x0_ohm_per_km=0.3, max_i_ka=0.25, switch=switch)

    lv = [Bus(id=f"LV{i}", vn_kv=0.416) for i in range(4)]
    return Feeder(
        name="ring",
        buses=(Bus(id="MV", vn_kv=11.0), *lv),
        lines=(cable("S1", "LV0", "LV1", LineSwitch.NORMALLY_CLOSED), cable("L2", "LV1", "LV2", LineSwitch.NONE),
               cable("S2", "LV0", "LV3", LineSwitch.NORMALLY_CLOSED),
               cable("TIE", "LV3", "LV2", LineSwitch.NORMALLY_OPEN)),
        transformer=Transformer(id="TR", hv_bus="MV", lv_bus="LV0", sn_kva=250.0, vn_hv_kv=11.0, vn_lv_kv=0.416,
                                vk_percent=4.0, vkr_percent=1.0, shift_deg=30.0),
        source=Source(bus="MV", vn_kv=11.0, vm_pu=1.02, s_sc_mva=100.0, rx_ratio=0.1, x0x_ratio=1.0,
                      r0x0_ratio=0.1),
        customers=(Customer(id="C2", bus="LV2", phases="A"), Customer(id="C3", bus="LV3", phases="BC")),
    )


def one_bus_feeder(name: str, customers: tuple[tuple[str, str, float], ...]) -> Feeder:
    """mv =trafo= lv --50 m-- b1, with the customers (id, phases, power factor) all at b1."""
    return Feeder(
        name=name,
        buses=(Bus(id="mv", vn_kv=10.0), Bus(id="lv", vn_kv=0.4), Bus(id="b1", vn_kv=0.4)),
        lines=(Line(id="l1", from_bus="lv", to_bus="b1", length_km=0.05, r1_ohm_per_km=0.2, x1_ohm_per_km=0.08,
                    r0_ohm_per_km=0.8, x0_ohm_per_km=0.3, max_i_ka=0.2),),
        transformer=Transformer(id="t", hv_bus="mv", lv_bus="lv", sn_kva=250.0, vn_hv_kv=10.0, vn_lv_kv=0.4,
                                vk_percent=4.0, vkr_percent=1.0),
        source=Source(bus="mv", vn_kv=10.0, s_sc_mva=100.0),
        customers=tuple(Customer(id=c, bus="b1", phases=ph, power_factor=pf) for c, ph, pf in customers),
    )
