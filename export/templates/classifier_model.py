"""Triton python-backend model: runs the exported GAttANet ONNX graph with ONNX Runtime.

Self-contained on purpose (numpy, onnxruntime, triton_python_backend_utils only) so the model
repository works wherever it is copied. All requests of a dynamic batch are concatenated into
one ONNX Runtime run and the results split back; a bad request (wrong shape, non-finite
pixels) gets its own error response and the rest of the batch is served.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

CONFIDENCE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.meta = json.loads(params["gatta"])
        model_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        self.inputs = {i["name"]: [int(d) for d in i["dims"]] for i in config["input"]}
        self.output_names = [o["name"] for o in config["output"]]
        self.defaults = {"lesion_mask": 1.0, "query_bias": 0.0}
        self._init_metrics(args["model_name"])

    def _init_metrics(self, model_name):
        # The families must stay referenced on the model object, or the metrics vanish.
        labels = {"model": model_name}
        self.f_pred = pb_utils.MetricFamily("gatta_predictions_total", "Top-1 predictions by class",
                                            pb_utils.MetricFamily.COUNTER)
        self.m_pred = [self.f_pred.Metric(labels={**labels, "class": c}) for c in self.meta["labels"]]
        self.f_conf = pb_utils.MetricFamily("gatta_top1_confidence_bucket",
                                            "Top-1 probability, cumulative histogram buckets",
                                            pb_utils.MetricFamily.COUNTER)
        self.m_conf = [self.f_conf.Metric(labels={**labels, "le": str(b)}) for b in CONFIDENCE_BUCKETS + ["+Inf"]]
        self.f_conf_sum = pb_utils.MetricFamily("gatta_top1_confidence_sum", "Sum of top-1 probabilities",
                                                pb_utils.MetricFamily.COUNTER)
        self.m_conf_sum = self.f_conf_sum.Metric(labels=labels)
        self.f_agree = pb_utils.MetricFamily("gatta_agreement_mean", "Mean gatta score per layer, last batch",
                                             pb_utils.MetricFamily.GAUGE)
        self.m_agree = {l["name"]: self.f_agree.Metric(labels={**labels, "layer": l["name"]})
                        for l in self.meta["layers"]}
        self.f_images = pb_utils.MetricFamily("gatta_images_total", "Images classified", pb_utils.MetricFamily.COUNTER)
        self.m_images = self.f_images.Metric(labels=labels)
        self.f_lesion = pb_utils.MetricFamily("gatta_lesioned_requests_total",
                                              "Requests whose lesion mask switches off at least one layer",
                                              pb_utils.MetricFamily.COUNTER)
        self.m_lesion = self.f_lesion.Metric(labels=labels)
        self.f_reject = pb_utils.MetricFamily("gatta_rejected_requests_total", "Requests refused, by reason",
                                              pb_utils.MetricFamily.COUNTER)
        self.m_reject = {r: self.f_reject.Metric(labels={**labels, "reason": r}) for r in ("shape", "non_finite")}

    def _read(self, request):
        """The request's input arrays, defaults filled; raises ValueError for bad input."""
        arrays = {}
        batch = None
        for name, dims in self.inputs.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                if name not in self.defaults:
                    raise ValueError(f"input '{name}' is required")
                continue
            arr = tensor.as_numpy().astype(np.float32, copy=False)
            if list(arr.shape[1:]) != dims:
                self.m_reject["shape"].increment(1)
                raise ValueError(f"input '{name}' has shape {list(arr.shape[1:])} per image, expected {dims}")
            if not np.isfinite(arr).all():
                self.m_reject["non_finite"].increment(1)
                raise ValueError(f"input '{name}' contains NaN or infinite values")
            arrays[name] = arr
            batch = arr.shape[0] if name == "image" else batch
        for name, value in self.defaults.items():
            if name in self.inputs and name not in arrays:
                arrays[name] = np.full([batch] + self.inputs[name], value, np.float32)
            elif name in arrays and arrays[name].shape[0] != batch:
                raise ValueError(f"input '{name}' has batch {arrays[name].shape[0]}, image has {batch}")
        return arrays

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
            names = list(feeds[0])
            joined = {n: np.concatenate([f[n] for f in feeds]) for n in names}
            outputs = dict(zip(self.output_names, self.session.run(self.output_names, joined)))
            self._record(outputs, joined)
            start = 0
            for i, f in zip(good, feeds):
                n = f["image"].shape[0]
                tensors = [pb_utils.Tensor(k, np.ascontiguousarray(v[start:start + n])) for k, v in outputs.items()]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                if "lesion_mask" in f and (f["lesion_mask"] < 1).any():
                    self.m_lesion.increment(1)
                start += n
        return responses

    def _record(self, outputs, feeds):
        probs = outputs["probs"]
        top = probs.argmax(1)
        conf = probs.max(1)
        self.m_images.increment(len(top))
        for c in np.unique(top):
            self.m_pred[int(c)].increment(int((top == c).sum()))
        for bucket, metric in zip(CONFIDENCE_BUCKETS + [np.inf], self.m_conf):
            metric.increment(int((conf <= bucket).sum()))
        self.m_conf_sum.increment(float(conf.sum()))
        for name, metric in self.m_agree.items():
            key = f"gatta_{name}"
            if key in outputs:
                metric.set(float(outputs[key].mean()))

    def finalize(self):
        self.session = None
