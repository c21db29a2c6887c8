"""The training step's correctness gate on the CPU: float64 gradients, a falling loss, and the
pieces the parallel layouts rely on (torchrun's environment, batch split, TP row order, init)."""

from __future__ import annotations

import pytest
import torch

from aibench.core.checks import tolerance_for
from aibench.models.config import ModelArgs
from aibench.models.train import (
    Layout,
    TrainSpec,
    build_trainer,
    read_dist_env,
    split_batch,
    synthetic_tokens,
    tp_row_order,
    train_memory_bytes,
)
from aibench.models.train_check import grad_check, loss_curve, loss_decreases

CPU = torch.device("cpu")


def _trainer(name: str = "tiny", compute: str = "fp32", ac_every: int = 0, batch: int = 4, seq: int = 32):
    args = ModelArgs.from_name(name)
    spec = TrainSpec(args, global_batch=batch, seq=seq, compute=compute, ac_every=ac_every)
    return build_trainer(spec, CPU), synthetic_tokens(args.vocab_size, batch, seq, seed=1)


@pytest.mark.parametrize(("name", "ac_every"), [("tiny", 0), ("tiny", 1), ("tiny-moe", 2)])
def test_fp32_gradients_match_float64(name: str, ac_every: int) -> None:
    trainer, tokens = _trainer(name, ac_every=ac_every)
    g = grad_check(trainer, tokens)
    assert g.rel_error < tolerance_for("float32") and g.worst_rel_error < tolerance_for("float32")
    assert g.loss == pytest.approx(g.loss_ref, rel=1e-6)
    assert g.rel_error > 0  # fp32 is not fp64: a zero would mean the two sides were the same tensors


def test_bf16_autocast_gradients_are_within_the_bf16_bound_and_not_fp32_exact() -> None:
    trainer, tokens = _trainer("tiny", compute="bf16", ac_every=1)
    g = grad_check(trainer, tokens)
    assert tolerance_for("float32") < g.rel_error < tolerance_for("bfloat16")


def test_a_wrong_gradient_fails_the_check() -> None:
    trainer, tokens = _trainer()
    original = trainer.forward_backward

    def doubled(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = original(inputs, labels)
        for p in trainer.model.parameters():
            p.grad.mul_(2.0)  # what a loss scaled twice (or an unaveraged all-reduce over 2 ranks) gives
        return loss

    trainer.forward_backward = doubled  # type: ignore[method-assign]
    assert grad_check(trainer, tokens).rel_error == pytest.approx(1.0, rel=1e-4)


def test_loss_decreases_on_a_fixed_batch() -> None:
    trainer, tokens = _trainer()
    losses = loss_curve(trainer, tokens, 4)
    ok, detail = loss_decreases(losses)
    assert ok and losses[-1] < losses[0] - 0.1, detail
    assert loss_decreases([2.0, 2.0]) == (False, "loss did not decrease on a fixed batch: [2.0, 2.0]")
    assert not loss_decreases([3.0, float("nan"), 1.0])[0]
    assert not loss_decreases([3.0])[0]


def test_same_seed_same_model_and_batch() -> None:
    a, tokens_a = _trainer()
    b, tokens_b = _trainer()
    assert torch.equal(tokens_a, tokens_b)
    for (na, pa), (nb, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert na == nb and torch.equal(pa, pb)
    assert not torch.equal(tokens_a, synthetic_tokens(512, 4, 32, seed=2))


def test_read_dist_env() -> None:
    assert read_dist_env({}).world_size == 1 and not read_dist_env({}).distributed
    env = read_dist_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                         "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (3, 1, 4, 2)
    assert (env.master_addr, env.master_port, env.distributed) == ("10.0.0.1", 29500, True)
    with pytest.raises(ValueError, match="RANK is missing"):
        read_dist_env({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="'x' is not an integer"):
        read_dist_env({"WORLD_SIZE": "2", "RANK": "x"})
    with pytest.raises(ValueError, match="outside"):
        read_dist_env({"WORLD_SIZE": "2", "RANK": "2"})


def test_split_batch() -> None:
    tokens = torch.arange(4 * 5).view(4, 5)
    inputs, labels = split_batch(tokens, 1, 2)
    assert torch.equal(inputs, tokens[2:, :-1]) and torch.equal(labels, tokens[2:, 1:])
    with pytest.raises(ValueError, match="not divisible"):
        split_batch(tokens, 0, 3)


def test_tp_row_order_gives_each_rank_its_heads() -> None:
    a = ModelArgs.from_name("tiny")  # 4 q heads, 2 kv heads, head_dim 16
    order = tp_row_order(a, 2)
    assert sorted(order.tolist()) == list(range(8 * 16))
    hd = a.head_dim
    rank1 = order.chunk(2)[1].tolist()
    q = list(range(2 * hd, 4 * hd))  # q heads 2, 3
    k = list(range(4 * hd + hd, 4 * hd + 2 * hd))  # kv head 1 of k
    v = list(range(6 * hd + hd, 6 * hd + 2 * hd))  # kv head 1 of v
    assert rank1 == q + k + v
    assert torch.equal(tp_row_order(a, 1), torch.arange(8 * 16))


def test_train_memory_states_are_16_bytes_a_parameter_sharded_by_dp() -> None:
    from aibench.models.memory import param_count

    a = ModelArgs.from_name("llama-3.1-8b")
    spec = TrainSpec(a, global_batch=2, seq=8192, ac_every=1)
    one = train_memory_bytes(spec, Layout(), 2)
    eight = train_memory_bytes(spec, Layout(dp=8), 2)
    assert one["states"] == 16 * param_count(a)
    assert eight["states"] == 2 * param_count(a)  # 16 bytes / 8 ranks
    assert one["activations"] == eight["activations"] and one["logits"] == 2 * 8192 * a.vocab_size * 12
    assert train_memory_bytes(TrainSpec(a, 2, 8192, ac_every=0), Layout(), 2)["activations"] > one["activations"]
