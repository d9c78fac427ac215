"""Small feeders whose answers can be computed by hand, shared by the power-flow and LTUPF tests."""

from __future__ import annotations

from twin.network import Bus, Customer, Feeder, Line, Source, Transformer


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
