"""FL-LoRA: the whole model on every device, no server compute, adapters FedAvg'd."""

import pytest

from splittune.network.clock import simulate_round
from splittune.network.scenario import ScenarioConfig
from splittune.runtime.metering import tensor_bytes
from splittune.schemes import FL, Central
from scheme_setups import assert_states_close, global_state, make_setup


@pytest.mark.parametrize("family", ["bert", "gpt2"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_device_fl_equals_central(family, optimizer):
    fl = FL(make_setup(family=family, optimizer=optimizer, steps=2))
    central = Central(make_setup(family=family, optimizer=optimizer, steps=2))
    for t in range(2):
        assert fl.run_round(t).loss == pytest.approx(central.run_round(t).loss, rel=1e-6)
    assert_states_close(global_state(fl), global_state(central))


def test_no_server_compute_and_the_whole_model_on_the_device():
    fl = FL(make_setup(devices=3, steps=2))
    world = ScenarioConfig.preset("sft-paper").build(3)
    for t in range(2):
        result = fl.run_round(t)
        assert result.work.server == "none"
        assert all(s.server_flops == 0 and s.up_bytes == 0 and s.down_bytes == 0
                   for w in result.work.devices for s in w.steps)
        timeline = simulate_round(world, result.work, t)
        assert not [e for e in timeline.events if e.phase in ("SC", "IT", "GT")]
        kinds = result.bytes_by_kind
        assert kinds["activations_up"] == kinds["gradients_down"] == 0
        assert kinds["adapters_up"] > 0 and kinds["adapters_down"] > 0
        assert (kinds["model_down"] > 0) == (t == 0)  # the frozen model goes down once
    frozen = tensor_bytes(p for n, p in fl.model.named_parameters() if "lora_" not in n and "modules_to_save" not in n)
    assert result.device_memory.param_bytes > frozen  # the whole model plus its adapter
