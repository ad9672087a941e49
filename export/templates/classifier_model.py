"""Triton python-backend model: runs the exported GAttANet ONNX graph with ONNX Runtime.

Self-contained on purpose (numpy, onnxruntime, triton_python_backend_utils only) so the model
repository works wherever it is copied. All requests of a dynamic batch are concatenated into
one ONNX Runtime run and the results split back; a bad request gets its own error response and
the rest of the batch is served. Bad means a wrong shape, NaN or Inf, a value outside the
input's accepted range (config.pbtxt parameter ``bounds``, written by gatta-export from
gatta/bounds.py), or outputs that came out non-finite anyway: no answer with NaN or Inf in it
is ever returned as a success.

Device: a KIND_GPU instance runs ONNX Runtime's CUDA execution provider on the GPU Triton gave
it (the onnxruntime-gpu wheel); a KIND_CPU instance the CPU provider. A GPU instance whose
ONNX Runtime cannot run CUDA refuses to load, with the reason, rather than serve on the CPU
while its config says GPU (gatta-serve picks configs/cpu.pbtxt on hosts without a GPU).

Self-contained once exported: gatta-export pastes three shared modules in at the marker lines
below, so this file runs the same code as the package, never a copy kept equal by hand:
gatta/metrics.py (the gatta_* metric names, help texts and labels that the alert rules and the
dashboard query), gatta/guards.py (the input-range rule and the non-finite output check) and
gatta/cores.py (the core count).

Custom metrics are accumulated locally and flushed to Triton once a second by a background
thread: each metric call is a round trip to the server process, and calling ~30 of them per
execution doubled the time a batch-1 request spent in this model (1.4 ms vs 0.7 ms measured).
"""

import json
import os
import threading

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# @@gatta.metrics@@

# @@gatta.guards@@

# @@gatta.cores@@

FLUSH_INTERVAL_S = 1.0


def _session(model_path, opts, args):
    instance = args["model_instance_name"]
    if args.get("model_instance_kind") != "GPU":
        session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        pb_utils.Logger.log_info(f"{instance}: {os.path.basename(model_path)} on ONNX Runtime {ort.__version__} "
                                 f"CPUExecutionProvider, {opts.intra_op_num_threads} intra-op thread(s)")
        return session
    device = int(args["model_instance_device_id"])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(f"{instance} is a KIND_GPU instance but onnxruntime {ort.__version__} here has no "
                           "CUDAExecutionProvider: install the onnxruntime-gpu wheel instead of onnxruntime, "
                           "or serve configs/cpu.pbtxt (--model-config-name=cpu)")
    # TF32 off: FP32 results within the export's verified tolerance
    session = ort.InferenceSession(model_path, opts, providers=[
        ("CUDAExecutionProvider", {"device_id": device, "use_tf32": 0}), "CPUExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":  # ORT fell back to CPU
        raise RuntimeError(f"{instance}: ONNX Runtime's CUDAExecutionProvider failed to start on GPU {device} "
                           "(CUDA 12 / cuDNN 9 libraries?); see the log above")
    pb_utils.Logger.log_info(f"{instance}: ONNX Runtime {ort.__version__} CUDAExecutionProvider on GPU {device}")
    return session


def intra_op_threads(value, config):
    """``auto``: this host's cores shared out among the model's CPU instances, so that
    `gatta-export` on one machine and serving on another still fills the serving cores."""
    if value != "auto":
        return int(value)
    instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])
                    if g.get("kind", "KIND_CPU") == "KIND_CPU") or 1
    return max(1, available_cores() // instances)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.meta = json.loads(params["gatta"])
        # parameter "graph" (gatta.contract.PARAM_GRAPH): a GPU export's CPU twin loads the graph
        # shaped for ONNX Runtime's CPU layout, model_cpu.onnx; otherwise model.onnx
        graph = params.get("graph", "model.onnx")
        model_path = os.path.join(args["model_repository"], args["model_version"], graph)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads(params.get("intra_op_threads", "1"), config)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = _session(model_path, opts, args)
        self.inputs = {i["name"]: [int(d) for d in i["dims"]] for i in config["input"]}
        self.output_names = [o["name"] for o in config["output"]]
        # tensor names and the optional inputs' defaults: written by gatta-export
        self.names = json.loads(params["tensors"])
        self.defaults = json.loads(params["defaults"])
        # accepted input ranges; a repository exported before they existed has none, and then
        # only NaN/Inf inputs and non-finite outputs are refused
        self.bounds = json.loads(params.get("bounds", "{}"))
        self.reasons = ["shape", "non_finite", *(f"{name}_range" for name in self.bounds), "non_finite_output"]
        self._init_metrics(args["model_name"])
        self._lock = threading.Lock()
        self._reset_pending()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(FLUSH_INTERVAL_S,), daemon=True)
        self._flusher.start()

    def _init_metrics(self, model):
        # pb_utils.MetricFamily exists only in an instance's stub, not in the one that loads this
        # file to auto-complete the config, so it is looked up here and not at import
        kinds = {COUNTER: pb_utils.MetricFamily.COUNTER, GAUGE: pb_utils.MetricFamily.GAUGE}
        # The families must stay referenced on the model object, or the metrics vanish.
        self.families = {m.name: pb_utils.MetricFamily(m.name, m.help, kinds[m.kind]) for m in METRICS}

        def series(metric, value=None):
            return self.families[metric.name].Metric(labels=metric.labels(model, value))

        self.m_pred = [series(PREDICTIONS, c) for c in self.meta["labels"]]
        self.m_conf = [series(CONFIDENCE_BUCKET, b) for b in (*CONFIDENCE_BUCKETS, "+Inf")]
        self.m_conf_sum = series(CONFIDENCE_SUM)
        self.m_agree = {l["name"]: series(AGREEMENT, l["name"]) for l in self.meta["layers"]}
        self.m_images = series(IMAGES)
        self.m_lesion = series(LESIONED)
        self.m_reject = {r: series(REJECTED, r) for r in self.reasons}

    # -- metrics: accumulate here, flush from a thread -------------------------------------
    def _reset_pending(self):
        self.p_top, self.p_conf = [], []  # per batch: top-1 class and probability of each image
        self.p_lesion = 0
        self.p_reject = dict.fromkeys(self.reasons, 0)
        self.p_gatta = {}  # the last batch's gatta maps, by layer

    def _flush(self):
        """Counts and histograms are worked out here, once a second, not on the request path."""
        with self._lock:
            tops, confs, lesion, reject, gatta = self.p_top, self.p_conf, self.p_lesion, self.p_reject, self.p_gatta
            self._reset_pending()
        top = np.concatenate(tops) if tops else np.zeros(0, np.int64)
        conf = np.sort(np.concatenate(confs)) if confs else np.zeros(0, np.float32)
        images, conf_sum = len(top), float(conf.sum())
        pred = np.bincount(top, minlength=len(self.meta["labels"]))
        conf = np.append(np.searchsorted(conf, np.asarray(CONFIDENCE_BUCKETS, conf.dtype), side="right"), len(conf))
        agree = {name: float(g.mean()) for name, g in gatta.items()}
        if images:
            self.m_images.increment(images)
            self.m_conf_sum.increment(conf_sum)
        for metric, n in zip(self.m_pred, pred):
            if n:
                metric.increment(int(n))
        for metric, n in zip(self.m_conf, conf):
            if n:
                metric.increment(int(n))
        if lesion:
            self.m_lesion.increment(lesion)
        for reason, n in reject.items():
            if n:
                self.m_reject[reason].increment(n)
        for name, value in agree.items():
            self.m_agree[name].set(value)

    def _flush_loop(self, interval):
        while not self._stop.wait(interval):
            self._flush()

    def _reject(self, reason):
        with self._lock:
            self.p_reject[reason] += 1

    def _read(self, request):
        """The request's input arrays (optional inputs only when sent); raises ValueError for
        bad input."""
        arrays = {}
        for name, dims in self.inputs.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                if name not in self.defaults:
                    raise ValueError(f"input '{name}' is required")
                continue
            arr = tensor.as_numpy().astype(np.float32, copy=False)
            if list(arr.shape[1:]) != dims:
                self._reject("shape")
                raise ValueError(f"input '{name}' has shape {list(arr.shape[1:])} per image, expected {dims}")
            refused = range_refusal(name, arr, self.bounds)
            if refused is not None:
                self._reject(refused[0])
                raise ValueError(refused[1])
            arrays[name] = arr
        batch = arrays[self.names["image"]].shape[0]
        for name in self.defaults:
            if name in arrays and arrays[name].shape[0] != batch:
                raise ValueError(f"input '{name}' has batch {arrays[name].shape[0]}, image has {batch}")
        return arrays

    def _join(self, feeds):
        """One ONNX Runtime feed for the whole dynamic batch. An optional input that no request
        sent is left out: the graph's own default (an initializer) applies, with no array built
        or copied; one that only some sent is filled with the default for the others."""
        joined = {}
        for name in self.inputs:
            parts = [f.get(name) for f in feeds]
            if all(p is None for p in parts):
                continue
            if name in self.defaults:
                batches = [f[self.names["image"]].shape[0] for f in feeds]
                parts = [np.full([n] + self.inputs[name], self.defaults[name], np.float32) if p is None else p
                         for p, n in zip(parts, batches)]
            joined[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return joined

    def execute(self, requests):
        responses = [None] * len(requests)
        good, feeds = [], []
        for i, request in enumerate(requests):
            try:
                feeds.append(self._read(request))
                good.append(i)
            except ValueError as exc:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        if good:
            # every output is on the way to logits or feeds a metric: computed once for the batch
            outputs = dict(zip(self.output_names, self.session.run(self.output_names, self._join(feeds))))
            total = sum(f[self.names["image"]].shape[0] for f in feeds)
            bad = non_finite_rows(outputs, total)
            self._record(outputs, None if bad is None else ~bad)
            start = 0
            lesioned = 0
            for i, f in zip(good, feeds):
                n = f[self.names["image"]].shape[0]
                if bad is not None and bad[start:start + n].any():
                    self._reject("non_finite_output")
                    responses[i] = self._non_finite_response(f)
                    start += n
                    continue
                # only what the request asked for crosses back to Triton (Triton asks for every
                # output when a client names none)
                wanted = requests[i].requested_output_names() or self.output_names
                tensors = [pb_utils.Tensor(k, outputs[k][start:start + n]) for k in wanted]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                mask = f.get(self.names["lesion_mask"])
                if mask is not None and (mask < 1).any():
                    lesioned += 1
                start += n
            if lesioned:
                with self._lock:
                    self.p_lesion += lesioned
        return responses

    def _non_finite_response(self, feed):
        """The error for a request whose outputs came out NaN or Inf from accepted inputs. An
        optional input it sent away from its default is the likely cause (400, naming it and its
        accepted range); otherwise the model failed on a valid image (500)."""
        for name, default in self.defaults.items():
            arr = feed.get(name)
            if arr is not None and (arr != default).any():
                b = self.bounds.get(name)
                message = (f"the outputs of this request are not finite: input '{name}' (largest magnitude "
                           f"{short_float(np.abs(arr).max())}) drives this model past float32; send smaller values"
                           + (f" ({b['expect']})" if b else ""))
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
        image = feed[self.names["image"]]
        message = (f"the outputs of this request are not finite although its inputs were accepted (image values "
                   f"in [{short_float(image.min())}, {short_float(image.max())}]): the model failed on it")
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))

    def _record(self, outputs, keep=None):
        """Metrics of the batch; ``keep``: only these images (the others' outputs are not finite)."""
        if keep is not None:
            if not keep.any():
                return
            outputs = {name: arr[keep] for name, arr in outputs.items()}
        probs = outputs[self.names["probs"]]
        top = probs.argmax(1)
        conf = probs[np.arange(len(top)), top]
        prefix = self.names["gatta_prefix"]
        gatta = {name: outputs[prefix + name] for name in self.m_agree if prefix + name in outputs}
        with self._lock:
            self.p_top.append(top)
            self.p_conf.append(conf)
            self.p_gatta = gatta

    def finalize(self):
        self._stop.set()
        self._flusher.join(timeout=5)
        self._flush()
        self.session = None
