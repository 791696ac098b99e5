// hiclr view: the page's viewer. Reads the JSON payload written by hiclr/view.py, loads the inlined
// three.js modules through blob: URLs (so the page works from file:// with no server), and draws the
// points, the camera frustums and the legend. window.hiclrView exposes the state for tests.
const $ = (id) => document.getElementById(id);
const D = JSON.parse($("hiclr-data").textContent);
const statusEl = $("status");

function blobURL(text) {
  return URL.createObjectURL(new Blob([text], { type: "text/javascript" }));
}
const lib = (name) => $("lib-" + name).textContent;

const TYPES = { uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
                int32: Int32Array, uint32: Uint32Array, float32: Float32Array };

async function inflate(blob) {
  const s = atob(blob.gz);
  const bin = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bin[i] = s.charCodeAt(i);
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new TYPES[blob.dtype](await new Response(stream).arrayBuffer());
}

const fmtPct = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : (100 * x).toFixed(1));
const GREY = [200, 200, 200], FADED = [232, 232, 232];
const ERR = [
  { key: "right", name: "right", color: [46, 160, 67] },
  { key: "wrong", name: "wrong class", color: [214, 39, 40] },
  { key: "miss", name: "no label from source (a miss)", color: [255, 160, 0] },
  { key: "nogt", name: "no ground truth (not scored)", color: [190, 190, 190] },
];

function segmentColor(id) {
  // golden-ratio hues, hashed so neighbouring segment ids differ
  let h = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  h = ((h ^ (h >>> 13)) >>> 0) / 4294967296;
  const s = 0.55 + 0.35 * (((id * 2654435761) >>> 0) % 97) / 96, v = 0.92;
  const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const rgb = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return rgb.map((x) => Math.round(255 * x));
}

async function main() {
  const coreURL = blobURL(lib("three.core.min.js"));
  const modURL = blobURL(lib("three.module.min.js").replaceAll("./three.core.min.js", coreURL));
  const ctlURL = blobURL(lib("OrbitControls.js").replace(/from\s*['"]three['"]/g, `from '${modURL}'`));
  const THREE = await import(modURL);
  const { OrbitControls } = await import(ctlURL);

  const A = {};
  for (const [name, blob] of Object.entries(D.arrays)) A[name] = await inflate(blob);
  const n = D.points_shown;
  const labels = {};
  for (const s of D.label_sources) labels[s] = A["label_" + s];
  // per-point offsets into the views_* rows (rows are sorted by point)
  let viewStart = null;
  if (A.views_count) {
    viewStart = new Uint32Array(n + 1);
    for (let i = 0; i < n; i++) viewStart[i + 1] = viewStart[i] + A.views_count[i];
  }

  // ---- header
  $("title").textContent = D.title;
  $("count").textContent = D.points_shown === D.points_total
    ? `${D.points_total.toLocaleString("en")} points`
    : `showing ${D.points_shown.toLocaleString("en")} of ${D.points_total.toLocaleString("en")} points (decimated)`;
  $("nviews").textContent = D.views;
  $("notes").textContent = D.notes.join(" · ");

  // ---- three.js scene
  const pos = new Float32Array(3 * n);
  for (let i = 0; i < 3 * n; i++) pos[i] = D.origin[i % 3] + A.pos[i] * D.step[i % 3];
  const colors = new Uint8Array(3 * n);
  const geom = new THREE.BufferGeometry();
  geom.setAttribute("position", new THREE.BufferAttribute(pos, 3));
  geom.setAttribute("color", new THREE.BufferAttribute(colors, 3, true));
  geom.computeBoundingBox();
  geom.computeBoundingSphere();
  // three.js attenuates a point to size * (viewport height / 2) / depth pixels; a world-size splat
  // needs size / tan(fov / 2) (fov 50°)
  const worldSize = D.point_size / Math.tan((50 / 2) * Math.PI / 180);
  const material = new THREE.PointsMaterial({ size: worldSize, vertexColors: true, sizeAttenuation: true });
  const points = new THREE.Points(geom, material);
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0xffffff);
  scene.add(points);

  let frustums = null, frustumColors = null;
  if (A.frustums) {
    const v = D.views, f = A.frustums, segs = [[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]];
    const fp = new Float32Array(v * segs.length * 6);
    let k = 0;
    for (let j = 0; j < v; j++) for (const [a, b] of segs) for (const c of [a, b])
      for (let d = 0; d < 3; d++) fp[k++] = f[(j * 5 + c) * 3 + d];
    frustumColors = new Float32Array(fp.length);
    const fg = new THREE.BufferGeometry();
    fg.setAttribute("position", new THREE.BufferAttribute(fp, 3));
    fg.setAttribute("color", new THREE.BufferAttribute(frustumColors, 3));
    frustums = new THREE.LineSegments(fg, new THREE.LineBasicMaterial({ vertexColors: true }));
    scene.add(frustums);
  }
  function colourFrustums(lit) {
    if (!frustums) return;
    const per = 16 * 3;
    for (let j = 0; j < D.views; j++) {
      const c = lit === null ? [0.1, 0.35, 0.85] : lit.has(j) ? [0.9, 0.1, 0.1] : [0.75, 0.75, 0.75];
      for (let k = 0; k < per; k++) frustumColors[j * per + k] = c[k % 3];
    }
    frustums.geometry.attributes.color.needsUpdate = true;
  }
  colourFrustums(null);

  const host = $("canvas");
  const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  // the colours are sRGB bytes already: no linear → sRGB conversion, so a class shows its legend colour
  renderer.outputColorSpace = THREE.LinearSRGBColorSpace;
  host.appendChild(renderer.domElement);
  const box = geom.boundingBox, centre = box.getCenter(new THREE.Vector3());
  const ext = Math.max(box.max.x - box.min.x, box.max.y - box.min.y, box.max.z - box.min.z, 1e-3);
  const camera = new THREE.PerspectiveCamera(50, 1, ext / 1000, ext * 50);
  camera.up.set(0, 0, 1);
  camera.position.set(centre.x - 0.7 * ext, centre.y - 1.2 * ext, centre.z + 1.1 * ext);
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.target.copy(centre);
  controls.update();
  const render = () => renderer.render(scene, camera);
  controls.addEventListener("change", render);
  function resize() {
    const w = host.clientWidth, h = host.clientHeight;
    renderer.setSize(w, h);
    camera.aspect = w / Math.max(h, 1);
    camera.updateProjectionMatrix();
    render();
  }
  new ResizeObserver(resize).observe(host);

  // ---- colour sources
  const state = { source: D.sources.includes("gt") ? "gt" : D.sources.includes("pred") ? "pred" : "rgb",
                  errorsOf: ["pred", "refined", "pseudo"].find((s) => labels[s]) || null,
                  isolated: null, pinned: null };
  function errorCategory(i, s) {
    const g = labels.gt[i], p = labels[s][i];
    if (g < 0) return 3;
    if (p < 0) return 2;
    return p === g ? 0 : 1;
  }
  function colourPoints() {
    const s = state.source, iso = state.isolated, pal = D.palette;
    for (let i = 0; i < n; i++) {
      let c;
      if (s === "rgb") c = A.rgb ? [A.rgb[3 * i], A.rgb[3 * i + 1], A.rgb[3 * i + 2]] : GREY;
      else if (s === "segments") c = segmentColor(A.segments[i]);
      else if (s === "errors") {
        const e = errorCategory(i, state.errorsOf);
        c = iso !== null && e !== iso ? FADED : ERR[e].color;
      } else {
        const l = labels[s][i];
        c = iso !== null && l !== iso ? FADED : l >= 0 ? pal[l] : GREY;
      }
      colors[3 * i] = c[0]; colors[3 * i + 1] = c[1]; colors[3 * i + 2] = c[2];
    }
    geom.attributes.color.needsUpdate = true;
  }

  function legendRows() {
    const s = state.source;
    if (s === "rgb") return { head: A.rgb ? "the scan's own colours" : "the scan has no colours", rows: [] };
    if (s === "segments") {
      const ids = new Set(A.segments);
      return { head: `${ids.size.toLocaleString("en")} geometric segments (random colours)`, rows: [] };
    }
    const src = s === "errors" ? state.errorsOf : s;
    const sc = D.scores[src];
    const head = sc ? `${D.source_titles[src] || src}: mIoU <b data-miou="${sc.miou}">${fmtPct(sc.miou)}</b> %` +
      (sc.seen_miou !== null ? ` (${fmtPct(sc.seen_miou)} on points seen by a view)` : "") : D.source_titles[src];
    if (s === "errors") {
      const counts = [0, 0, 0, 0];
      for (let i = 0; i < n; i++) counts[errorCategory(i, src)]++;
      return { head, rows: ERR.map((e, k) => ({ key: k, name: e.name, color: e.color, count: counts[k] })) };
    }
    const counts = new Array(D.classes.length + 1).fill(0);
    for (let i = 0; i < n; i++) { const l = labels[s][i]; counts[l >= 0 ? l : D.classes.length]++; }
    const rows = [];
    D.classes.forEach((name, c) => {
      const support = sc ? sc.support[c] : 0;
      if (!counts[c] && !support) return;
      rows.push({ key: c, name, color: D.palette[c], count: counts[c], iou: sc ? sc.iou[c] : undefined, scored: !!sc });
    });
    if (counts[D.classes.length]) rows.push({ key: -1, name: "no label", color: GREY, count: counts[D.classes.length] });
    return { head, rows };
  }
  function drawLegend() {
    const { head, rows } = legendRows();
    const hasIoU = rows.some((r) => r.scored);
    let html = `<div style="margin-top:8px">${head}</div>`;
    if (rows.length) {
      html += "<table><tr class='muted'><td></td><td>class</td>" + (hasIoU ? "<td class='num'>IoU %</td>" : "") +
        "<td class='num'>points</td></tr>";
      for (const r of rows) {
        const off = state.isolated !== null && state.isolated !== r.key ? " off" : "";
        html += `<tr class="entry${off}" data-key="${r.key}"><td><span class="swatch" style="background:rgb(${r.color})"></span></td>` +
          `<td>${r.name}</td>` +
          (hasIoU ? `<td class="num iou" data-class="${r.name}" data-iou="${r.iou === null || r.iou === undefined ? "" : r.iou}">${fmtPct(r.iou)}</td>` : "") +
          `<td class="num">${r.count.toLocaleString("en")}</td></tr>`;
      }
      html += "</table>";
    }
    $("legend").innerHTML = html;
    for (const tr of $("legend").querySelectorAll("tr.entry")) {
      tr.addEventListener("click", () => {
        const k = Number(tr.dataset.key);
        state.isolated = state.isolated === k ? null : k;
        update();
      });
    }
  }
  function update() {
    for (const b of $("sources").children) b.classList.toggle("on", b.dataset.source === state.source);
    $("errors-of").style.display = state.source === "errors" ? "" : "none";
    colourPoints();
    drawLegend();
    render();
  }
  for (const s of D.sources) {
    const b = document.createElement("button");
    b.textContent = s === "pred" ? "model" : s;
    b.title = D.source_titles[s];
    b.dataset.source = s;
    b.addEventListener("click", () => { state.source = s; state.isolated = null; update(); });
    $("sources").appendChild(b);
  }
  for (const s of ["pred", "refined", "pseudo"].filter((s) => labels[s])) {
    const o = document.createElement("option");
    o.value = s; o.textContent = s === "pred" ? "model" : s;
    $("errors-source").appendChild(o);
  }
  $("errors-source").addEventListener("change", (e) => { state.errorsOf = e.target.value; state.isolated = null; update(); });
  $("show-frustums").addEventListener("change", (e) => { if (frustums) frustums.visible = e.target.checked; render(); });
  $("size").addEventListener("input", (e) => { material.size = worldSize * Number(e.target.value); render(); });

  // ---- hover and click
  const ray = new THREE.Raycaster(), mouse = new THREE.Vector2();
  function pick(ev) {
    const r = renderer.domElement.getBoundingClientRect();
    mouse.set(((ev.clientX - r.left) / r.width) * 2 - 1, -((ev.clientY - r.top) / r.height) * 2 + 1);
    ray.setFromCamera(mouse, camera);
    ray.params.Points.threshold = D.point_size * 0.5;
    const hit = ray.intersectObject(points, false);
    return hit.length ? hit[0].index : null;
  }
  const cls = (l) => (l >= 0 ? D.classes[l] : "–");
  function showInfo(i, pinned) {
    if (i === null) { $("info").innerHTML = "hover or click a point"; return; }
    let html = `<b>point ${i}</b>${pinned ? " (pinned; click empty space to release)" : ""}<table>`;
    for (const s of D.label_sources)
      html += `<tr><td>${s === "pred" ? "model" : s}</td><td><span class="swatch" style="background:rgb(${labels[s][i] >= 0 ? D.palette[labels[s][i]] : GREY})"></span> ${cls(labels[s][i])}</td></tr>`;
    if (A.segments) html += `<tr><td>segment</td><td>${A.segments[i]}</td></tr>`;
    html += "</table>";
    if (viewStart) {
      const a = viewStart[i], b = viewStart[i + 1];
      html += `seen by ${b - a} view${b - a === 1 ? "" : "s"}`;
      const parts = [];
      for (let k = a; k < Math.min(b, a + 12); k++) parts.push(`#${A.views_view[k]} ${cls(A.views_label[k])}`);
      if (parts.length) html += ": " + parts.join(", ") + (b - a > 12 ? ", …" : "");
    }
    $("info").innerHTML = html;
  }
  function litViews(i) {
    if (!viewStart || i === null) return null;
    const lit = new Set();
    for (let k = viewStart[i]; k < viewStart[i + 1]; k++) lit.add(A.views_view[k]);
    return lit;
  }
  let hoverTimer = null, down = null;
  renderer.domElement.addEventListener("pointermove", (ev) => {
    if (state.pinned !== null || ev.buttons) return;
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => showInfo(pick(ev), false), 60);
  });
  renderer.domElement.addEventListener("pointerdown", (ev) => { down = [ev.clientX, ev.clientY]; });
  renderer.domElement.addEventListener("pointerup", (ev) => {
    if (!down || Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) > 4) return; // a drag, not a click
    const i = pick(ev);
    state.pinned = i;
    showInfo(i, i !== null);
    colourFrustums(litViews(i));
    render();
  });

  update();
  resize();
  statusEl.textContent = `${D.points_shown.toLocaleString("en")} points · three.js r${THREE.REVISION}`;
  // screenOf: the page coordinates of a world point (for tests that click a known point)
  const screenOf = (x, y, z) => {
    const v = new THREE.Vector3(x, y, z).project(camera), r = renderer.domElement.getBoundingClientRect();
    return [r.left + (v.x + 1) / 2 * r.width, r.top + (1 - v.y) / 2 * r.height];
  };
  window.hiclrView = { ready: true, state, payload: D, render, screenOf };
  document.body.dataset.ready = "1";
}

main().catch((err) => {
  $("error").textContent = "could not draw the scene: " + err;
  statusEl.textContent = "error";
  document.body.dataset.ready = "error";
  console.error(err);
});
