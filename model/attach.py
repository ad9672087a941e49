"""Where the head attaches to a CNN, and the CNN cut into stages there, with torch.fx.

The paper attaches a ResNet at its stem (before the max-pool), the ends of layer1-3, the pooled
vector and the logits. The rule behind it, for any CNN that narrows its maps by strides of 2:

1. the stem's output at stride 2; where the stem is strided more (ConvNeXt's 4x4 patchify),
   the first stage's output instead (taken by rule 2);
2. the last trunk module at strides 4, 8 and 16 (a stage's last block);
3. never the last stage (the one the pooled vector is read from: the paper leaves ResNet's
   layer4 out);
4. the pre-logits vector: the input of the final linear classifier, after any final norm and
   before dropout (timm's ``pre_logits``; the pooled vector wherever the classifier is one layer);
5. the logits.

A *trunk* is the ordered list of modules a family's forward runs before pooling (ResNet's conv1,
bn1, relu, maxpool, layer1-4; EfficientNet's ``features.0``-``features.8``). Each trunk module's
output stride is measured by running the traced graph once (torch.fx ``ShapeProp``), not written
down. The model is traced with the trunk modules kept whole (leaf modules, as in torchvision's
``create_feature_extractor``) and the graph is cut after each attached node into consecutive
GraphModules: stage ``i`` maps tap ``i-1``'s output to tap ``i``'s. A cut that another value
crosses (a skip connection around an attached node) is refused with the node's name.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

PROBE_SIZE = 64  # strides are read off a 64 px probe (every family here narrows by powers of 2)
ATTACH_STRIDES = (4, 8, 16)


class AttachError(ValueError):
    """A CNN whose graph cannot be cut at the attach rule's nodes."""


def expand_trunk(net: nn.Module, trunk: tuple[str, ...]) -> list[str]:
    """Trunk module names; ``features.*`` stands for the children of ``features``, in order."""
    names = []
    for entry in trunk:
        if entry.endswith(".*"):
            parent = net.get_submodule(entry[:-2])
            names += [f"{entry[:-2]}.{child}" for child, _ in parent.named_children()]
        else:
            net.get_submodule(entry)  # a typo fails here, with torch's message naming it
            names.append(entry)
    return names


class _TrunkTracer(fx.Tracer):
    """Keeps the trunk modules whole: their outputs are the candidate attach points."""

    def __init__(self, leaves: set[str], extra_leaf=None):
        super().__init__()
        self.leaves, self.extra_leaf = leaves, extra_leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaves or (self.extra_leaf is not None and self.extra_leaf(m)):
            return True
        return super().is_leaf_module(m, qualname)


def trace(net: nn.Module, trunk: list[str], extra_leaf=None, autowrap=()) -> fx.GraphModule:
    tracer = _TrunkTracer(set(trunk), extra_leaf)
    if autowrap:
        tracer._autowrap_function_ids.update(id(f) for f in autowrap)
    graph = tracer.trace(net)
    return fx.GraphModule(tracer.root, graph, net.__class__.__name__)


def _output_node(gm: fx.GraphModule) -> fx.Node:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    value = out.args[0]
    if not isinstance(value, fx.Node):
        raise AttachError("the model's forward returns more than one tensor; a classifier returns its logits")
    return value


def _skip_dropout(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    while node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Dropout):
        node = node.args[0]
    return node


def pick_nodes(gm: fx.GraphModule, trunk: list[str], stem: str | None,
               probe_size: int = PROBE_SIZE) -> list[fx.Node]:
    """The attach rule (module doc) on a traced classifier: its attached nodes, in order."""
    gm.eval()
    ShapeProp(gm).propagate(torch.zeros(1, 3, probe_size, probe_size))
    by_target = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    missing = [t for t in trunk if t not in by_target]
    if missing:
        raise AttachError(f"trunk module {missing[0]} is not called by the model's forward")
    stride = {t: probe_size // by_target[t].meta["tensor_meta"].shape[-1] for t in trunk}
    has_weights = [t for t in trunk if any(True for _ in gm.get_submodule(t).parameters())]
    last_stage = stride[has_weights[-1]]
    nodes = []
    if stem is not None and stride[stem] == 2:
        nodes.append(by_target[stem])
    elif stem is None and 2 < last_stage:
        at2 = [t for t in trunk if stride[t] == 2]
        nodes += [by_target[at2[-1]]] if at2 else []
    for s in ATTACH_STRIDES:
        at = [t for t in trunk if stride[t] == s]
        if at and s < last_stage:
            nodes.append(by_target[at[-1]])
    logits = _output_node(gm)
    if logits.op != "call_module" or not isinstance(gm.get_submodule(logits.target), nn.Linear):
        raise AttachError(f"the model's output {logits.name} is not a linear classifier's")
    nodes += [_skip_dropout(gm, logits.args[0]), logits]
    return nodes


def cut(gm: fx.GraphModule, at: list[fx.Node]) -> list[fx.GraphModule]:
    """Consecutive stages of ``gm``: stage i ends at ``at[i]``; the last must be the output."""
    if _output_node(gm) is not at[-1]:
        raise AttachError("the last attached node must be the model's output (the logits)")
    stages, start, seg = [], None, 0
    graph, env = fx.Graph(), {}
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        if node.op == "placeholder":
            env[node] = graph.placeholder("image")
            continue

        def lookup(arg: fx.Node) -> fx.Node:
            if arg not in env and arg.op == "get_attr":  # a constant: each stage reads its own
                env[arg] = graph.node_copy(arg)
            if arg not in env:
                raise AttachError(f"cannot attach at {at[seg - 1].target}: {arg.name} (before it) is still used "
                                  f"by {node.name} (after it)")
            return env[arg]

        env[node] = graph.node_copy(node, lookup)
        if seg < len(at) and node is at[seg]:
            graph.output(env[node])
            stages.append(fx.GraphModule(gm, graph, f"stage{seg}"))
            # the next stage starts from this node's (modulated) output and nothing else
            graph, start = fx.Graph(), node
            env = {node: graph.placeholder(node.name)}
            seg += 1
    assert seg == len(at) and start is at[-1]  # every attached node closed a stage
    return stages
