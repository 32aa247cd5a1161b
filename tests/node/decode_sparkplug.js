// Decodes Sparkplug B payloads with Eclipse Tahu's own JavaScript implementation (sparkplug-payload),
// independent of linegw's encoder: one base64 payload per line in, one JSON object per line out.
// 64-bit integers (Long) come out as numbers when they fit, else as decimal strings.
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

function plain(value) {
  if (value === null || value === undefined) return value;
  if (typeof value === "object" && typeof value.toNumber === "function" && "low" in value && "high" in value) {
    const n = value.toNumber();
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  try {
    process.stdout.write(JSON.stringify(plain(sparkplug.decodePayload(Buffer.from(line, "base64")))) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e) }) + "\n");
  }
});
