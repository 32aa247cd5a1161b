// RFC 8785 (JSON Canonicalization Scheme) by an independent implementation, the npm `canonicalize` package:
// one JSON document per line in, its canonical text per line out (as a JSON string, so any text fits a line).
import canonicalize from "canonicalize";
import readline from "node:readline";

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  try {
    process.stdout.write(JSON.stringify(canonicalize(JSON.parse(line))) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: String(e) }) + "\n");
  }
});
