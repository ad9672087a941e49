"""``gatta-client view``: a browser viewer for the gattanet models a server hosts.

One origin serves the page (``client/static/``, no CDN, fonts or analytics) and the small JSON
API it calls; the API talks to Triton through :class:`GattaClient`, so the browser never needs
CORS from Triton. Starlette + uvicorn (the ``[view]`` extra): a few hundred kilobytes of pure
Python that runs offline, where Gradio would bring a large front-end bundle and phone home.

    GET  /api/models                    the server's gattanet models, and the one the page opens on
    GET  /api/info?model=NAME           model, classes, attached layers (paper notation)
    POST /api/classify?model=NAME&lesion=c.cdd&prior=cat&strength=0.3&top_k=5   body: the image's bytes

``model`` may be left out: the model the viewer was started on.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np

from gatta.lesion import LesionError, full_pattern

from . import maps
from .client import GattaClient
from .errors import ClientError
from .images import ImageError, load_image
from .inputs import InputError

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD = 20_000_000  # bytes, as the server-side decoder of encoded images
# bytes of an oversized upload read and dropped so that its 413 arrives (see upload() in create_app);
# past this the viewer stops reading and closes the connection
DRAIN_LIMIT = 10 * MAX_UPLOAD


def _png(img) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def model_info(client: GattaClient) -> dict:
    i = client.info
    return {"name": i.name, "flavour": i.flavour, "image_size": i.image_size, "labels": i.labels,
            "pattern": i.full_pattern, "baseline": i.baseline, "has_prior": i.class_keys is not None,
            "prior_strength": client.prior_strength, "quantity": maps.label_for(i.layers),
            "layers": [{"name": l.name, "kind": l.kind, "letter": full_pattern([l.kind]), "shape": l.shape,
                        "alpha": l.alpha} for l in i.layers]}


def _summary(result, top_k: int) -> dict:
    return {"label": result.label, "index": result.index, "prob": result.prob,
            "top_k": [{"label": l, "prob": p} for l, p in result.top_k[:top_k]]}


def classify(client: GattaClient, data: bytes, lesion: str | None, prior: str | None, strength: float,
             top_k: int = 5) -> dict:
    """Everything the page shows for one image and one setting of the controls; raises
    ImageError / LesionError / ClientError with a one-line reason."""
    info = client.info
    image = load_image(data, info.preprocessing)  # decoded once; both requests reuse the array
    start = time.perf_counter()
    n = len(info.labels)
    on = client.classify([image], top_k=n, lesion=lesion, prior=prior, prior_strength=strength)[0]
    off = client.classify([image], top_k=n, lesion="." * len(info.layers), maps=False)[0]
    infer_ms = (time.perf_counter() - start) * 1e3
    for r in (on, off):
        if not r.ok:
            raise ClientError(r.error)
    probs, probs_off = dict(on.top_k), dict(off.top_k)
    limit = maps.shared_limit(on, info) if on.gatta else 1.0
    layers = []
    for layer in info.layers if on.gatta else []:
        values = maps.modulation(layer, on.gatta[layer.name])
        entry = {"name": layer.name, "kind": layer.kind, "alpha": layer.alpha,
                 "min": float(values.min()), "max": float(values.max())}
        if layer.kind == "conv":
            entry["map"] = _png(maps.conv_image(values, limit))
        else:
            entry["bars"] = _png(maps.layer_bars(layer, values, on, info, width=192, height=120))
            entry["values"] = [round(float(v), 6) for v in values]
        layers.append(entry)
    bar = maps.colour_bar(limit, height=160, label=f"conv {maps.label_for(info.layers)}")
    return {"on": _summary(on, top_k), "off": _summary(off, top_k), "probs": probs, "probs_off": probs_off,
            "lesion": on.lesion or info.full_pattern, "prior": prior, "strength": strength,
            "input": _png(maps.input_image(image)), "limit": limit, "colour_bar": _png(bar),
            "layers": layers, "infer_ms": round(infer_ms, 2)}


class ModelClients:
    """One GattaClient per gattanet model on the server, made on first use with the settings of
    the client the viewer started on (which stays the default). The model list is read once:
    ``gatta-serve`` loads every model at start and nobody else may load or unload one."""

    def __init__(self, client: GattaClient):
        self.default = client.model
        self.models = client.gattanet_models()
        self.models.setdefault(client.model, client.info)
        self._clients = {client.model: client}
        self._lock = threading.Lock()

    def listing(self) -> dict:
        return {"default": self.default, "models": [
            {"name": name, "flavour": m.flavour, "classes": len(m.labels), "image_size": m.image_size,
             "pattern": m.full_pattern, "baseline": m.baseline} for name, m in self.models.items()]}

    def get(self, name: str | None) -> GattaClient:
        """The client for ``name`` (None: the default); KeyError for a model not on the list,
        ClientError when the server cannot describe it."""
        name = name or self.default
        if name not in self.models:
            raise KeyError(name)
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._clients[self.default].for_model(name)
            return self._clients[name]

    def close(self) -> None:
        for name, client in self._clients.items():
            if name != self.default:  # the caller's own client stays theirs to close
                client.close()


def create_app(client: GattaClient):
    """The Starlette application: the static page and its API, on the server ``client`` talks
    to, opening on ``client``'s model."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    clients = ModelClients(client)

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def models(request):
        return JSONResponse(clients.listing())

    async def chosen(request) -> GattaClient | JSONResponse:
        """The client for the request's ``model`` parameter, or the error response to send."""
        name = request.query_params.get("model") or None
        try:
            return await run_in_threadpool(clients.get, name)
        except KeyError:
            return error(404, f"unknown model {name!r}; the server's gattanet models: {', '.join(clients.models)}")
        except ClientError as exc:
            return error(502, str(exc))

    async def upload(request) -> bytes | JSONResponse:
        """The request's body, or the 413 to send once the body is read. Any answer must wait for
        the upload: uvicorn closes a ``Connection: close`` request's socket (urllib's) right after
        the response, and a socket closed with bytes unread is reset by the kernel, which usually
        destroys the response before the client reads it (ConnectionResetError, BrokenPipeError)."""
        too_big = error(413, f"image over {MAX_UPLOAD // 10**6} MB; send a smaller file")
        declared = int(request.headers.get("content-length", 0))  # h11 has refused a malformed one
        if declared > MAX_UPLOAD and request.headers.get("expect", "").lower() == "100-continue":
            # the client (curl, for large bodies) sends nothing until a 100 Continue, which uvicorn
            # sends only once the body is read: refused now, the body is never sent
            return too_big
        if declared > DRAIN_LIMIT:
            return drop(too_big)
        body, read = bytearray(), 0
        async for chunk in request.stream():  # chunked uploads too: their size is known only at the end
            read += len(chunk)
            if read > DRAIN_LIMIT:
                return drop(too_big)
            if read <= MAX_UPLOAD:  # past it, the rest is read and dropped only so that the 413 arrives
                body += chunk
        return bytes(body) if read <= MAX_UPLOAD else too_big

    def drop(response: JSONResponse) -> JSONResponse:
        """``response`` for an upload too large to read to its end: the connection closes after it
        and the client may see the reset instead (an upload that large is no mistake)."""
        response.headers["connection"] = "close"
        return response

    async def info(request):
        client = await chosen(request)
        return client if isinstance(client, JSONResponse) else JSONResponse(model_info(client))

    async def classify_endpoint(request):
        body = await upload(request)  # first: every answer, not only the 413, must wait for the upload
        if isinstance(body, JSONResponse):
            return body
        client = await chosen(request)
        if isinstance(client, JSONResponse):
            return client
        q = request.query_params
        classes = len(client.info.labels)
        try:
            strength = float(q.get("strength", client.prior_strength))
            top_k = int(q.get("top_k", min(5, classes)))  # the default fits a model of fewer classes
        except ValueError:
            return error(400, "strength must be a number and top_k an integer")
        if not np.isfinite(strength):
            return error(400, "strength must be finite")
        if not 1 <= top_k <= classes:
            return error(400, f"top_k must be from 1 to {classes}, the number of classes of {client.model}")
        prior = q.get("prior") or None
        if prior is not None and prior not in client.info.labels:
            return error(400, f"unknown class {prior!r} for the prior")
        if prior is not None and client.info.class_keys is None:
            return error(400, "this model exports no class key directions, so no prior (baseline export?)")
        try:
            result = await run_in_threadpool(classify, client, body, q.get("lesion") or None,
                                             prior, strength, top_k)
        except ImageError as exc:
            return error(400, f"not a usable image: {exc}")
        except (LesionError, InputError) as exc:  # InputError: e.g. a prior strong enough to leave query_bias's range
            return error(400, str(exc))
        except ClientError as exc:  # Triton down or refusing: the viewer stays up and says so
            return error(502, str(exc))
        return JSONResponse(result)

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/models", models),
        Route("/api/info", info),
        Route("/api/classify", classify_endpoint, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ])
    app.state.clients = clients
    return app


class Viewer:
    """The viewer on a uvicorn server in a background thread (tests, scripts); ``port=0``
    picks a free one. ``gatta-client view`` runs the same app in the foreground."""

    def __init__(self, client: GattaClient, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._app = create_app(client)
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self, wait: float = 30.0) -> "Viewer":
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"viewer did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
        self._app.state.clients.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve(client: GattaClient, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Run the viewer in the foreground until Ctrl-C."""
    import uvicorn

    uvicorn.run(create_app(client), host=host, port=port, log_level="warning")
