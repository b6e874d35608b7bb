// The medlens viewer: sign in with a key, pick a model, drop an image, a volume or a zipped DICOM series, and see
// the answer drawn on the image with NiiVue (masks and heatmaps as overlays with opacity, boxes with labels and
// scores, class probabilities, uncertainty, the referral flag and the report). Volumes show three planes; the mouse
// wheel scrolls through the slices of each. Everything it shows comes from the service's API (/v1), which it calls
// with the key as a Bearer token; the key stays in this tab's session storage.
import { Niivue, NVImage, SLICE_TYPE } from "@niivue/niivue";

const $ = (id) => document.getElementById(id);
const COLOURS = [
  [0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
];
const LAYOUTS = {
  multiplanar: SLICE_TYPE.MULTIPLANAR, axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
};

const state = { key: sessionStorage.getItem("medlens-key") || "", models: [], result: null, focus: null, nv: null };
window.medlensViewer = state;

function setState(name, message) {
  document.body.dataset.state = name;
  $("status").textContent = message || "";
}

function auth() {
  return { Authorization: `Bearer ${state.key}` };
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${body.detail || body.error || "error"}`);
  return body;
}

// ---- signing in and choosing a model ----------------------------------------------------------------------------
async function signIn() {
  state.key = $("key").value.trim() || state.key;
  $("login-error").textContent = "";
  try {
    const body = await api("/v1/models");
    state.models = body.models;
    sessionStorage.setItem("medlens-key", state.key);
  } catch (error) {
    $("login-error").textContent = error.message;
    return;
  }
  const select = $("model");
  select.innerHTML = "";
  for (const model of state.models) {
    const option = document.createElement("option");
    option.value = model.name;
    option.textContent = `${model.name} (${model.task}, ${model.spatial_dims}D)`;
    select.appendChild(option);
  }
  $("login").hidden = true;
  $("work").hidden = false;
  showModel();
  setState("signed-in", "Drop an image, a volume or a zipped DICOM series.");
}

function currentModel() {
  return state.models.find((m) => m.name === $("model").value);
}

function showModel() {
  const model = currentModel();
  if (!model) return;
  const lines = [
    `version ${model.version}`, `classes: ${model.classes.join(", ") || "-"}`,
    `inputs: ${model.input_kinds.join(", ")}`, ...model.model_card,
  ];
  $("model-info").innerHTML = "";
  for (const line of lines) {
    const li = document.createElement("li");
    li.textContent = line;
    $("model-info").appendChild(li);
  }
}

// ---- predicting ------------------------------------------------------------------------------------------------
async function predict(file) {
  const model = currentModel();
  if (!model || !file) return;
  clearResult();
  const form = new FormData();
  form.append("file", file, "upload");
  const extras = ["explain", "report"].filter((name) => $(name).checked).map((name) => `&${name}=true`).join("");
  try {
    let result;
    if (model.spatial_dims === 3) {
      setState("uploading", "Sending the volume as a job...");
      const job = await api(`/v1/models/${encodeURIComponent(model.name)}/jobs?viewer=true${extras}`, {
        method: "POST", body: form,
      });
      result = await waitForJob(job.id);
    } else {
      setState("uploading", "Predicting...");
      result = await api(`/v1/models/${encodeURIComponent(model.name)}/predict?viewer=true${extras}`, {
        method: "POST", body: form,
      });
    }
    state.result = result;
    showNumbers(result, model);
    await draw(result, model);
    setState("ready", `Done: ${model.name} ${result.model_version || model.version}.`);
  } catch (error) {
    setState("error", error.message);
  }
}

async function waitForJob(id) {
  for (;;) {
    const job = await api(`/v1/jobs/${id}`);
    if (job.state === "done") return job.result;
    if (job.state === "failed") throw new Error(`job failed: ${job.error}`);
    setState("waiting", `Job ${id.slice(0, 8)}: ${job.state}...`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function clearResult() {
  for (const id of ["label", "probabilities", "sizes", "boxes", "details", "report"]) $(id).innerHTML = "";
  $("raw").textContent = "";
  state.result = null;
  state.focus = null;
}

function row(table, cells, attributes = {}) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attributes)) tr.dataset[name] = value;
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell;
    tr.appendChild(td);
  }
  table.appendChild(tr);
}

function chip(index) {
  const span = document.createElement("span");
  span.className = "chip";
  const [r, g, b] = COLOURS[index % COLOURS.length];
  span.style.background = `rgb(${r},${g},${b})`;
  return span;
}

const SHOWN = new Set(["task", "model", "source", "probabilities", "label", "boxes", "files", "volumes_ml",
  "areas_mm2", "report", "model_version", "request_id"]);

function showNumbers(result, model) {
  $("raw").textContent = JSON.stringify(result, null, 2);
  if (result.label !== undefined) {
    $("label").textContent = Array.isArray(result.label) ? result.label.join(", ") : String(result.label);
  }
  for (const [name, p] of Object.entries(result.probabilities || {})) {
    const bar = document.createElement("meter");
    bar.min = 0;
    bar.max = 1;
    bar.value = p;
    row($("probabilities"), [name, p.toFixed(4), bar], { cls: name, p: String(p) });
  }
  const sizes = result.volumes_ml || result.areas_mm2 || {};
  const unit = result.volumes_ml ? "mL" : "mm²";
  Object.entries(sizes).forEach(([name, value], i) => {
    row($("sizes"), [chip(i + 1), name, `${value} ${unit}`], { cls: name, value: String(value) });
  });
  for (const box of result.boxes || []) {
    const index = model.classes.indexOf(box.label) + 1;
    row($("boxes"), [chip(index), box.label, box.score.toFixed(3), box.box.map((v) => v.toFixed(0)).join(", ")],
      { cls: box.label, score: String(box.score) });
  }
  // uncertainty, referral and anything else the prediction says (flags included)
  for (const [key, value] of Object.entries(result)) {
    if (SHOWN.has(key) || value === null) continue;
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    if (key === "flags" && text === "[]") continue;
    row($("details"), [key, text], { key });
  }
  showReport(result);
}

async function showReport(result) {
  const files = result.files || {};
  const link = files.report_en || files.report; // the plain-language text when there is one, else the JSON
  if (typeof result.report === "string") {
    $("report").textContent = result.report;
  } else if (link) {
    const response = await fetch(link, { headers: auth() });
    const text = await response.text();
    if (/\.html?$/.test(link)) {
      const frame = document.createElement("iframe");
      frame.sandbox = "";
      frame.srcdoc = text;
      $("report").appendChild(frame);
    } else {
      $("report").textContent = text;
    }
  }
}

// ---- drawing ------------------------------------------------------------------------------------------------------
function labelColormap(n) {
  const cm = { R: [], G: [], B: [], A: [], I: [], labels: [] };
  for (let i = 0; i < n; i++) {
    const [r, g, b] = COLOURS[i % COLOURS.length];
    cm.R.push(r);
    cm.G.push(g);
    cm.B.push(b);
    cm.A.push(i === 0 ? 0 : 255);
    cm.I.push(i);
    cm.labels.push(String(i));
  }
  return cm;
}

async function draw(result, model) {
  const files = result.files || {};
  const nv = state.nv;
  const opacity = Number($("opacity").value);
  const volumes = [{ url: files.viewer_image, headers: auth(), colormap: "gray", opacity: 1 }];
  const overlay = files.viewer_mask ? "mask" : files.viewer_heatmap ? "heatmap" : files.viewer_explanation ? "explanation" : null;
  if (overlay) {
    volumes.push({ url: files[`viewer_${overlay}`], headers: auth(), colormap: overlay === "mask" ? "gray" : "warm", opacity });
  }
  await nv.loadVolumes(volumes);
  if (overlay === "mask") {
    nv.volumes[1].setColormapLabel(labelColormap(Math.max(model.classes.length, 2)));
    focusOn(nv.volumes[1]);
  }
  if (result.boxes && result.boxes.length) drawBoxes(result.boxes, model);
  const is2d = model.spatial_dims === 2;
  $("layout").value = is2d ? "axial" : "multiplanar";
  nv.setSliceType(LAYOUTS[$("layout").value]);
  nv.updateGLVolume();
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

// put the crosshair at the centre of the labelled voxels, so every plane cuts through the finding
function focusOn(volume) {
  const [, nx, ny, nz] = volume.hdr.dims;
  const img = volume.img;
  let n = 0;
  let sx = 0;
  let sy = 0;
  let sz = 0;
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      for (let x = 0; x < nx; x++) {
        if (img[x + nx * (y + ny * z)] > 0) {
          n++;
          sx += x;
          sy += y;
          sz += z;
        }
      }
    }
  }
  if (!n) return;
  state.focus = [Math.round(sx / n), Math.round(sy / n), Math.round(sz / n)];
  state.nv.scene.crosshairPos = state.nv.vox2frac(state.focus, 1);
  state.nv.drawScene();
}

function drawBoxes(boxes, model) {
  const nv = state.nv;
  const base = nv.volumes[0];
  const overlay = NVImage.zerosLike(base, "uint8");
  const [, nx, ny] = base.hdr.dims;
  const put = (col, row, value) => {
    const x = Math.min(nx - 1, Math.max(0, Math.round(col)));
    const y = ny - 1 - Math.min(ny - 1, Math.max(0, Math.round(row))); // rows run down the picture
    overlay.img[x + nx * y] = value;
  };
  for (const box of boxes) {
    const value = model.classes.indexOf(box.label) + 1;
    const [x0, y0, x1, y1] = box.box;
    for (let c = x0; c <= x1; c++) {
      put(c, y0, value);
      put(c, y1, value);
    }
    for (let r = y0; r <= y1; r++) {
      put(x0, r, value);
      put(x1, r, value);
    }
  }
  overlay.opacity = 1;
  overlay.setColormapLabel(labelColormap(model.classes.length + 1));
  nv.addVolume(overlay);
}

// where the first tile is drawn, for tests and for anyone scripting the page
state.tile = () => {
  const slice = state.nv.screenSlices[0];
  return slice ? { leftTopWidthHeight: slice.leftTopWidthHeight, axCorSag: slice.axCorSag } : null;
};
state.vox2frac = (voxel, index = 0) => Array.from(state.nv.vox2frac(voxel, index));

// ---- page wiring ----------------------------------------------------------------------------------------------------
async function main() {
  const nv = new Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: false, isColorbar: false, crosshairWidth: 0 });
  await nv.attachTo("gl");
  nv.setInterpolation(true); // nearest neighbour: voxels stay voxels
  state.nv = nv;
  $("key").value = "";
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn();
  });
  $("model").addEventListener("change", showModel);
  $("file").addEventListener("change", () => predict($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    predict(event.dataTransfer.files[0]);
  });
  $("opacity").addEventListener("input", () => {
    for (let i = 1; i < nv.volumes.length; i++) nv.setOpacity(i, Number($("opacity").value));
  });
  $("layout").addEventListener("change", () => nv.setSliceType(LAYOUTS[$("layout").value]));
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem("medlens-key");
    window.location.reload();
  });
  setState("signed-out");
  if (state.key) await signIn();
}

main().catch((error) => setState("error", `viewer: ${error.message}`));
