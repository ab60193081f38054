// Runs a WASI program (a test binary built for wasm32-wasip1) in Node.js: `node scripts/wasi-run.mjs FILE.wasm ARGS`,
// with the current directory visible to it and its exit code passed on. Cargo's runner for that target.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [file, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [file, ...args], env, preopens: { ".": "." }, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
exit(wasi.start(instance));
