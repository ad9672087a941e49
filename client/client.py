"""GattaClient: classify images on a Triton server hosting a gattanet model (HTTP or gRPC).

    >>> client = GattaClient("localhost:8000")          # reads labels, layers, sizes
    >>> result = client.classify(["cat.jpg"], lesion="c.cdd")[0]
    >>> result.label, result.prob, result.gatta["conv1"].shape

Works for any exported backbone: everything model-specific comes from the server. A server
may host several gattanet models; ``model=NAME`` picks one, and without it the client takes
the server's only gattanet model (several: :class:`~gatta.client.models.AmbiguousModel`,
naming them; :mod:`gatta.client.models` reads what the server hosts).
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tritonclient.utils import InferenceServerException

from gatta import contract
from gatta.contract import ModelMetadata
from gatta.lesion import format_lesion

from . import metrics
from .errors import ClientError, ServerUnreachable
from .images import ImageError, ImageLike, describe, load_image
from .inputs import check_inputs
from .models import ServerModels
from .results import Classification


def _protocol_module(protocol: str):
    if protocol == "http":
        import tritonclient.http as module
    elif protocol == "grpc":
        import tritonclient.grpc as module
    else:
        raise ClientError(f"unknown protocol {protocol!r}; use http or grpc")
    return module


GRPC_UNAVAILABLE = "StatusCode.UNAVAILABLE"  # InferenceServerException.status() of a gRPC UNAVAILABLE


def is_unavailable(exc: BaseException) -> bool:
    """Worth retrying on a fresh connection: socket errors (refused, reset, timed out, broken
    pipe), an HTTP connection closed mid-response (geventhttpclient's parse errors are
    ``http.client.HTTPException``) and gRPC's UNAVAILABLE status. Decided by type and status
    code; a request the server answered with an error is never retried."""
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return True
    return isinstance(exc, InferenceServerException) and exc.status() == GRPC_UNAVAILABLE


@dataclass(frozen=True)
class PreparedRequest:
    """Encoded inputs and requested outputs, reusable across sends."""

    inputs: list
    outputs: list
    names: list[str]


class GattaClient:
    def __init__(self, url: str = "localhost:8000", protocol: str = "http", model: str | None = None,
                 timeout: float = 60.0, retries: int = 3, backoff: float = 0.2, prior_strength: float = 0.3):
        self.url, self.protocol, self.model = url.removeprefix("http://"), protocol, model
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.prior_strength = prior_strength
        self._module = _protocol_module(protocol)
        self._local = threading.local()
        self._server = ServerModels(self._call, self.url, protocol)
        if self.model is None:
            self.model = self._server.only_gattanet()
        self.info, self.device = self._server.describe(self.model)

    def for_model(self, model: str) -> "GattaClient":
        """A client for another model on the same server, with this one's settings."""
        return GattaClient(self.url, self.protocol, model, timeout=self.timeout, retries=self.retries,
                           backoff=self.backoff, prior_strength=self.prior_strength)

    # -- transport ------------------------------------------------------------------------
    @property
    def _client(self):
        """One tritonclient per thread: the HTTP client is not safe to share across threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            kwargs = {"network_timeout": self.timeout, "connection_timeout": self.timeout} if self.protocol == "http" else {}
            client = self._module.InferenceServerClient(self.url, **kwargs)
            self._local.client = client
        return client

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, what: str, method: str, *args, **kwargs):
        """Call a tritonclient method, retrying what :func:`is_unavailable` accepts with
        exponential backoff (backoff, 2 x backoff, ...), each try on a fresh connection."""
        start = time.monotonic()
        retrying = Retrying(retry=retry_if_exception(is_unavailable), stop=stop_after_attempt(self.retries + 1),
                            wait=wait_exponential(multiplier=self.backoff), before_sleep=lambda _: self.close(),
                            reraise=True)
        try:
            return retrying(lambda: getattr(self._client, method)(*args, **kwargs))
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            metrics.ERRORS.labels(kind="unavailable").inc()
            raise ServerUnreachable(
                f"cannot reach Triton at {self.url} ({self.protocol}) for {what}: "
                f"{str(exc).splitlines()[0][:120]}; tried {retrying.statistics['attempt_number']} times over "
                f"{time.monotonic() - start:.1f} s. Is gatta-serve running?") from None

    # -- model description -----------------------------------------------------------------
    def server_models(self) -> list[str]:
        """Names of the models the server has (from its statistics, which stay unrestricted)."""
        return self._server.names()

    def gattanet_models(self) -> dict[str, ModelMetadata]:
        """Every gattanet classifier on the server (name -> its metadata), in name order: the
        models whose config carries the ``gatta`` parameter (not the _encoded ensembles, the
        _preprocess models or other systems' models)."""
        return self._server.gattanet()

    # -- request building -------------------------------------------------------------------
    def lesion_mask(self, lesion: str | Sequence[float] | None) -> np.ndarray:
        """[L] mask from the paper's notation (``c.cdd``), a sequence, or None (full model);
        raises LesionError."""
        return self.info.lesion_mask(lesion)

    def query_bias(self, prior: str | int | None, strength: float | None = None) -> np.ndarray:
        """Top-down attention towards a class: add strength * dir_c / |dir_c|^2 to q_avg, where
        dir_c (exported with the model) is the logits layer's key for class c signed so that
        the change amplifies class c's logit. On the shipped CIFAR-10 model, strength 0.3
        towards the true class raises validation accuracy from 80.30% to 81.74%, while 1.0
        lowers it to 59.82%: the useful strength depends on the model (docs/results.md)."""
        if prior is None:
            return contract.default_input(contract.QUERY_BIAS, 1, (self.info.d,))[0]
        labels = self.info.labels
        if isinstance(prior, str) and not prior.isdigit():
            if prior not in labels:
                raise ClientError(f"unknown class {prior!r} for --prior; classes: {', '.join(labels[:20])}")
            index = labels.index(prior)
        else:
            index = int(prior)
            if not 0 <= index < len(labels):
                raise ClientError(f"class index {index} out of range 0..{len(labels) - 1}")
        if self.info.class_keys is None:
            raise ClientError("this model exports no class key directions (baseline export?)")
        strength = self.prior_strength if strength is None else strength
        return contract.prior_bias(self.info.class_keys, index, strength)

    def _request(self, images: np.ndarray, mask: np.ndarray, bias: np.ndarray, maps: bool) -> PreparedRequest:
        m = self._module
        batch = images.shape[0]
        feeds = {contract.IMAGE: images}
        if not self.info.baseline:
            # The onnxruntime flavour requires them; elsewhere they are left out at their
            # defaults (less to encode, send and copy: the model's graph supplies them).
            required = self.info.flavour != "python"
            for name, value in ((contract.LESION_MASK, mask), (contract.QUERY_BIAS, bias)):
                if required or np.any(value != contract.OPTIONAL_DEFAULTS[name]):
                    feeds[name] = np.repeat(value[None], batch, 0)
        check_inputs(feeds)
        inputs = []
        for name, arr in feeds.items():
            tensor = m.InferInput(name, list(arr.shape), contract.DTYPE)
            tensor.set_data_from_numpy(np.ascontiguousarray(arr, contract.NUMPY_DTYPE))
            inputs.append(tensor)
        wanted = [n for n in self.info.output_names if maps or n in (contract.LOGITS, contract.PROBS)]
        return PreparedRequest(inputs, [m.InferRequestedOutput(n) for n in wanted], wanted)

    def send(self, request: PreparedRequest) -> dict[str, np.ndarray]:
        """Send a request built by :meth:`prepare` (it can be sent again and again)."""
        kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        start = time.perf_counter()
        result = self._call("inference", "infer", self.model, request.inputs, outputs=request.outputs, **kwargs)
        metrics.REQUEST_SECONDS.labels(protocol=self.protocol).observe(time.perf_counter() - start)
        return {n: result.as_numpy(n) for n in request.names}

    def _infer(self, images: np.ndarray, mask: np.ndarray, bias: np.ndarray, maps: bool) -> dict[str, np.ndarray]:
        return self.send(self._request(images, mask, bias, maps))

    # -- public API ---------------------------------------------------------------------------
    def prepare(self, images: np.ndarray, lesion=None, prior: str | int | None = None,
                maps: bool = True) -> PreparedRequest:
        """The request :meth:`infer` would send, encoded once, for :meth:`send` (load generators)."""
        return self._request(np.asarray(images, contract.NUMPY_DTYPE), self.lesion_mask(lesion),
                             self.query_bias(prior), maps)

    def infer(self, images: np.ndarray, lesion=None, prior: str | int | None = None,
              maps: bool = True) -> dict[str, np.ndarray]:
        """One request with a ready float32 [B, 3, S, S] batch (pixels in [0, 1]); returns
        the outputs by tensor name (``maps=False``: logits and probs only)."""
        return self._infer(np.asarray(images, contract.NUMPY_DTYPE), self.lesion_mask(lesion),
                           self.query_bias(prior), maps)

    def infer_encoded(self, blobs: Sequence[bytes], outputs: Sequence[str] = (contract.PROBS,)) -> dict[str, np.ndarray]:
        """One request to the ``<model>_encoded`` ensemble: encoded JPEG/PNG bytes, decoded
        server-side by the same decoder as :func:`load_image`; optional inputs at their defaults."""
        m = self._module
        tensor = m.InferInput(contract.IMAGE_BYTES, [len(blobs), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b] for b in blobs], dtype=object))
        result = self._call("inference", "infer", self.model + contract.ENCODED_SUFFIX, [tensor],
                            outputs=[m.InferRequestedOutput(n) for n in outputs])
        return {n: result.as_numpy(n) for n in outputs}

    def classify(self, images: Sequence[ImageLike] | ImageLike, top_k: int = 5, lesion=None, maps: bool = True,
                 prior: str | int | None = None, sources: Sequence[str] | None = None,
                 prior_strength: float | None = None) -> list[Classification]:
        """Classify images (paths, bytes, PIL images or arrays), batched to the server's
        max batch size. A bad image gets a result with ``error`` set; the others go on.
        ``prior_strength`` overrides the client's for this call."""
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images]
        mask, bias = self.lesion_mask(lesion), self.query_bias(prior, prior_strength)
        check_inputs({contract.LESION_MASK: mask, contract.QUERY_BIAS: bias})  # before any image is read
        lesion_text = format_lesion(mask, self.info.kinds) if lesion is not None else None
        results: list[Classification] = []
        loaded: list[tuple[int, np.ndarray]] = []
        for i, item in enumerate(images):
            name = sources[i] if sources else describe(item)
            results.append(Classification(source=name, lesion=lesion_text, prior=str(prior) if prior is not None else None))
            try:
                loaded.append((i, load_image(item, self.info.preprocessing)))
            except ImageError as exc:
                results[i].error = str(exc)
                metrics.ERRORS.labels(kind="image").inc()
        step = self.info.max_batch_size
        for start in range(0, len(loaded), step):
            chunk = loaded[start:start + step]
            try:
                out = self._infer(np.stack([a for _, a in chunk]), mask, bias, maps)
            except InferenceServerException as exc:  # refused by the server: this chunk only
                metrics.ERRORS.labels(kind="server").inc()
                for i, _ in chunk:
                    results[i].error = f"server refused: {str(exc).splitlines()[0]}"
                continue
            for row, (i, _) in enumerate(chunk):
                self._fill(results[i], out, row, top_k, maps)
        return results

    def _fill(self, res: Classification, out: dict, row: int, top_k: int, maps: bool) -> None:
        probs = out[contract.PROBS][row]
        order = np.argsort(-probs)[:top_k]
        labels = self.info.labels
        res.index = int(order[0])
        res.label, res.prob = labels[res.index], float(probs[res.index])
        res.top_k = [(labels[j], float(probs[j])) for j in order]
        metrics.PREDICTIONS.labels(label=res.label).inc()
        if maps and contract.Q_AVG in out:
            res.q_avg = out[contract.Q_AVG][row]
            res.gatta = {l.name: out[contract.gatta_output(l.name)][row] for l in self.info.layers}

    def classify_many(self, items: Iterable[ImageLike], concurrency: int = 4, batch_size: int | None = None,
                      **kwargs) -> Iterator[Classification]:
        """Stream results in input order with at most ``concurrency`` requests in flight."""
        batch_size = batch_size or min(8, self.info.max_batch_size)
        iterator = iter(items)

        def chunks():
            while True:
                chunk = [x for _, x in zip(range(batch_size), iterator)]
                if not chunk:
                    return
                yield chunk

        # Once one request has spent the whole retry budget on an unreachable server, the
        # requests after it fail at once instead of each waiting through its own backoff; their
        # images are recorded as errors, so `classify --resume` sends them again.
        unreachable: list[str] = []

        def work(chunk):
            sources = [describe(x) for x in chunk]
            if unreachable:
                return [Classification(source=s, error=f"not sent: {unreachable[0]}") for s in sources]
            try:
                return self.classify(chunk, sources=sources, **kwargs)
            except ClientError as exc:  # one failed request must not end the stream
                metrics.ERRORS.labels(kind="request").inc()
                if isinstance(exc, ServerUnreachable):
                    unreachable.append(str(exc))
                return [Classification(source=s, error=str(exc)) for s in sources]

        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            pending = []
            for chunk in chunks():
                pending.append(pool.submit(work, chunk))
                while len(pending) >= concurrency:
                    yield from pending.pop(0).result()
            for future in pending:
                yield from future.result()

    def health(self) -> dict:
        return {"live": self._call("health", "is_server_live"),
                "ready": self._call("health", "is_server_ready"),
                "model_ready": self._call("health", "is_model_ready", self.model)}

    def probe(self) -> float:
        """One tiny inference (a grey image, batch 1) whose probabilities must be finite and sum
        to 1; returns its seconds. Unlike Triton's live/ready endpoints, this sees a model that
        cannot answer (e.g. a dead python-backend stub, triton-inference-server/server#7230)."""
        size = self.info.image_size
        image = np.full((1, 3, size, size), 0.5, np.float32)
        start = time.perf_counter()
        try:
            probs = self._infer(image, self.lesion_mask(None), np.zeros(self.info.d, np.float32), maps=False)["probs"]
        except ClientError:
            raise
        except Exception as exc:  # tritonclient's InferenceServerException and transport errors
            raise ClientError(f"inference on '{self.model}' failed: {str(exc).splitlines()[0][:200]}") from None
        if probs is None or probs.shape != (1, len(self.info.labels)) or not np.isfinite(probs).all() \
                or abs(float(probs.sum()) - 1.0) > 1e-3:
            raise ClientError(f"inference on '{self.model}' returned unusable probabilities: {probs!r}"[:200])
        return time.perf_counter() - start
