"""``python -m bench qat_tries``'s diagnostic of where the INT8 drop lies: the quantisers it switches off are the
ones it names (a convolution's output quantiser that no convolution reads, never a convolution's input's)."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import torch

from bench import qat_tries as bench
from kit.quant import QATStudent
from kit.quant.scheme import conv_nodes

SPAN = {"type": "SPANStudent", "num_feat": 8, "num_block": 2, "scale": 2}


def test_conv_output_quantisers_are_outputs_no_convolution_reads() -> None:
    torch.manual_seed(0)
    net = QATStudent(SPAN, split_concat=False).train()
    with torch.no_grad():
        net(torch.rand(2, 3, 12, 12))
    graph = net.quantised
    outputs = {id(m) for m in bench.conv_output_quantisers(graph)}
    convs = conv_nodes(graph.graph, graph)
    quantisers = [
        n for n in graph.graph.nodes if n.op == "call_module" and str(n.target).startswith("activation_post_process")
    ]
    for n in quantisers:  # listed: exactly the rounding of a convolution's output that no convolution reads
        listed = id(graph.get_submodule(n.target)) in outputs
        assert listed == (n.args[0] in convs and not set(n.users) & convs), n.target
    assert 0 < len(outputs) < len(convs)  # SPAN: each block's c1_r and c2_r outputs (SiLU reads them), c3_r's, ...
    net.eval()
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        rounded = graph(x)
        for m in bench.conv_output_quantisers(graph):
            m.disable_fake_quant()
        unrounded = graph(x)
    assert not torch.equal(rounded, unrounded)  # the switch acts on the network's output
