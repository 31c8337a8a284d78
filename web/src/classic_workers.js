// Pages opened from disk (file://) have an opaque origin, and Chromium refuses module workers there, which is
// how gsplat.js starts its sorting workers (a blob: URL first, a data: URL as the fallback). Their code uses
// no imports, only `import.meta.url` (to locate a wasm file that is inlined anyway), so this shim turns them
// into classic workers: it refuses the blob: attempt, which makes gsplat.js retry with the data: URL, then
// decodes that URL, replaces `import.meta.url` and starts a classic blob worker, which file:// pages may run.
const NativeWorker = window.Worker;

function dataUrlText(url) {
  const comma = url.indexOf(",");
  const head = url.slice(0, comma);
  const body = url.slice(comma + 1);
  return head.endsWith(";base64") ? new TextDecoder().decode(Uint8Array.from(atob(body), (c) => c.charCodeAt(0)))
    : decodeURIComponent(body);
}

class ClassicWorker extends NativeWorker {
  constructor(url, options) {
    const href = String(url);
    if (options && options.type === "module") {
      if (!href.startsWith("data:")) throw new Error("module worker refused: retry with the data: URL");
      const code = dataUrlText(href).replace(/import\.meta\.url/g, "self.location.href");
      const blobUrl = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
      super(blobUrl, { ...options, type: "classic" });
      return;
    }
    super(url, options);
  }
}

if (location.protocol === "file:") window.Worker = ClassicWorker;
