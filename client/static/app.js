// The viewer page: a model picker, one image, the controls, and what /api/classify answers.
// Nothing here assumes a layer list or an image size: both come from /api/info per model.
// No dependencies.
"use strict";
const $ = (id) => document.getElementById(id);
// infoSeq counts model descriptions asked for, seq classifications: apart, so a layer toggled
// while the next model's description is on its way cannot make the page drop that description
const state = { model: null, info: null, file: null, mask: [], infoSeq: 0, seq: 0 };

function pattern() {
  return state.info.layers.map((l, i) => (state.mask[i] ? l.letter : ".")).join("");
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("result").hidden = true;
}

function percent(p) { return (100 * p).toFixed(1) + "%"; }

async function loadModels() {
  const response = await fetch("/api/models");
  const listing = await response.json();
  for (const m of listing.models) {
    $("model-picker").add(new Option(`${m.name} (${m.classes} classes, ${m.image_size}x${m.image_size})`, m.name));
  }
  // ?model=NAME opens the page on that model (a link to it); else the viewer's default
  const asked = new URLSearchParams(location.search).get("model");
  const first = listing.models.some((m) => m.name === asked) ? asked : listing.default;
  $("model-picker").value = first;
  await loadInfo(first);
}

async function loadInfo(model) {
  const seq = ++state.infoSeq;  // a description still on its way for a model chosen before is dropped
  const response = await fetch("/api/info?" + new URLSearchParams({ model }));
  const info = await response.json();
  if (seq !== state.infoSeq) return;
  if (info.error) throw new Error(info.error);
  state.model = model;
  state.info = info;
  state.mask = info.layers.map(() => true);
  $("model").textContent = `${info.name} (${info.flavour}): ${info.labels.length} classes, ` +
    `${info.image_size}x${info.image_size} input, layers ${info.pattern}`;
  $("toggles").replaceChildren();
  for (const [i, layer] of info.layers.entries()) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" checked data-layer="${i}"> ${layer.name} <code>${layer.letter}</code>`;
    label.querySelector("input").addEventListener("change", (e) => { state.mask[i] = e.target.checked; update(); });
    $("toggles").append(label);
  }
  $("prior").length = 1;  // keep "none"
  for (const name of info.labels) $("prior").add(new Option(name, name));
  $("prior-box").hidden = !info.has_prior;
  $("strength").value = info.prior_strength;
  $("strength-value").textContent = info.prior_strength;
  $("pattern").textContent = pattern();
  document.body.dataset.model = model;
  document.body.dataset.pending = "0";
  if (state.file) classify(); else $("result").hidden = true;
}

async function chooseModel(model) {
  history.replaceState(null, "", "?" + new URLSearchParams({ model }));
  try {
    await loadInfo(model);
  } catch (err) {
    showError(`cannot read model ${model}: ${err.message}`);
  }
}

function setAll(on) {
  state.mask = state.mask.map(() => on);
  for (const box of $("toggles").querySelectorAll("input")) box.checked = on;
  update();
}

function update() {
  $("pattern").textContent = pattern();
  classify();
}

async function classify() {
  if (!state.file) return;
  const seq = ++state.seq;
  document.body.dataset.pending = "1";
  const params = new URLSearchParams({ model: state.model, lesion: pattern(), strength: $("strength").value });
  if ($("prior").value) params.set("prior", $("prior").value);
  const started = performance.now();
  let data;
  try {
    const response = await fetch("/api/classify?" + params, { method: "POST", body: state.file });
    const text = await response.text();
    try { data = JSON.parse(text); } catch { data = { error: `viewer answered ${response.status}: ${text.slice(0, 200)}` }; }
  } catch (err) {
    data = { error: `cannot reach the viewer: ${err.message}` };
  }
  if (seq !== state.seq) return;  // a newer request is on its way
  if (data.error) showError(data.error); else render(data, performance.now() - started);
  document.body.dataset.pending = "0";
  document.body.dataset.done = String(Number(document.body.dataset.done) + 1);
}

function render(data, ms) {
  $("error").hidden = true;
  $("result").hidden = false;
  $("input").src = data.input;
  $("label").textContent = data.on.label;
  $("prob").textContent = percent(data.on.prob);
  $("shown-pattern").textContent = data.lesion;
  $("off-pattern").textContent = ".".repeat(state.info.layers.length);
  $("off-label").textContent = data.off.label;
  $("off-prob").textContent = percent(data.off.prob);
  const changed = data.on.label !== data.off.label;
  $("change").className = changed ? "changed" : "";
  $("change").textContent = changed ? `attention changes the prediction: ${data.off.label} → ${data.on.label}`
    : `same prediction (attention moves it by ${(100 * (data.on.prob - data.probs_off[data.on.label])).toFixed(1)} points)`;
  const rows = data.on.top_k.map((t) =>
    `<tr><td>${t.label}</td><td>${percent(t.prob)}</td><td>${percent(data.probs_off[t.label])}</td></tr>`);
  $("topk").tBodies[0].innerHTML = rows.join("");
  const prior = data.prior;
  $("prior-class").textContent = prior || "–";
  $("prior-prob").textContent = prior ? data.probs[prior].toFixed(4) : "–";
  $("prior-prob").dataset.value = prior ? String(data.probs[prior]) : "";
  $("timing").textContent = `round trip ${ms.toFixed(0)} ms (inference ${data.infer_ms.toFixed(0)} ms)`;
  const maps = $("maps");
  $("result").append($("scale"));  // keep the colour bar while the maps are replaced
  maps.replaceChildren();
  for (const [i, layer] of data.layers.entries()) {
    const figure = document.createElement("figure");
    figure.className = state.mask[i] ? "" : "off";
    figure.dataset.layer = layer.name;
    if (layer.kind === "conv") {
      const stack = document.createElement("div");
      stack.className = "stack";
      stack.innerHTML = `<img src="${data.input}" alt=""><img class="overlay" src="${layer.map}" alt="${layer.name} map">`;
      stack.querySelector(".overlay").style.opacity = $("opacity").value;
      figure.append(stack);
    } else {
      const img = document.createElement("img");
      img.src = layer.bars;
      img.alt = `${layer.name} bars`;
      figure.append(img);
    }
    const caption = document.createElement("figcaption");
    caption.textContent = `${layer.name}: ${state.info.quantity} [${layer.min.toPrecision(2)}, ${layer.max.toPrecision(2)}]` +
      (state.mask[i] ? "" : " (switched off)");
    figure.append(caption);
    maps.append(figure);
    if (layer.kind === "conv" && data.layers[i + 1]?.kind !== "conv") maps.append($("scale"));
  }
  $("scale").hidden = !data.layers.some((l) => l.kind === "conv");
  $("colour-bar").src = data.colour_bar;
  $("scale").querySelector("figcaption").textContent = `shared by the conv maps: ±${data.limit.toPrecision(3)}`;
}

function choose(file) {
  if (!file) return;
  state.file = file;
  classify();
}

$("model-picker").addEventListener("change", (e) => chooseModel(e.target.value));
$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("all-on").addEventListener("click", () => setAll(true));
$("all-off").addEventListener("click", () => setAll(false));
$("prior").addEventListener("change", classify);
$("strength").addEventListener("input", () => { $("strength-value").textContent = $("strength").value; });
$("strength").addEventListener("change", classify);
$("opacity").addEventListener("input", () => {
  for (const img of document.querySelectorAll(".overlay")) img.style.opacity = $("opacity").value;
});
for (const name of ["dragover", "drop"]) document.addEventListener(name, (e) => e.preventDefault());
$("drop").addEventListener("dragover", () => $("drop").classList.add("over"));
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { $("drop").classList.remove("over"); choose(e.dataTransfer.files[0]); });
loadModels().catch((err) => showError(`cannot read the models: ${err.message}`));
