// Runs Python code in the real MicroPython VM (the WebAssembly port, PyScript
// variant, pinned in package.json) with the firmware package installed at
// /lib/firmware, so relative imports resolve as they do on the board.
//
//   node tests/mpvm/run.mjs [--lib NAME=HOSTDIR]... [--heap BYTES] < code.py
//
// The code runs with top-level await allowed. Python's stdout goes to stdout
// line by line; an uncaught Python exception prints its MicroPython traceback
// to stderr and exits 1; a harness failure exits 2.
//
// A line `#@top-level` splits the code into parts run one after the other,
// returning to JavaScript in between. This port's gc.collect() only marks a
// collection as pending (its heap grows instead, split-heap-auto); the
// collection runs when the next part starts, at the top level, where no C
// stack holds stale roots. Heap measurements call gc.collect(), end a part,
// and read gc.mem_alloc() at the start of the next one.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function parseArgs(argv) {
  // The board's packages: the firmware and the protocol it loads
  // (protocol/wire.py, protocol/names.py). A --lib of the same name replaces one.
  const libs = [["firmware", path.join(repo, "firmware")], ["protocol", path.join(repo, "protocol")]];
  let heapsize = 1024 * 1024;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--lib" && i + 1 < argv.length) {
      const [name, dir] = argv[++i].split("=");
      const at = libs.findIndex(([known]) => known === name);
      if (at >= 0) libs.splice(at, 1);
      libs.push([name, path.resolve(dir)]);
    } else if (arg === "--heap" && i + 1 < argv.length) {
      heapsize = Number(argv[++i]);
    } else {
      throw new Error(`unknown argument ${arg}`);
    }
  }
  return { libs, heapsize };
}

// Copies the .py and .mpy files of a host folder into /lib/NAME/ as one package.
function installPackage(mp, name, dir) {
  const target = `/lib/${name}`;
  mp.FS.mkdirTree(target);
  for (const file of fs.readdirSync(dir).sort()) {
    if (file.endsWith(".py") || file.endsWith(".mpy")) {
      mp.FS.writeFile(`${target}/${file}`, fs.readFileSync(path.join(dir, file)));
    }
  }
}

async function main() {
  const { libs, heapsize } = parseArgs(process.argv.slice(2));
  const code = fs.readFileSync(0, "utf8");
  const mp = await loadMicroPython({
    heapsize,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  for (const [name, dir] of libs) {
    installPackage(mp, name, dir);
  }
  try {
    for (const part of code.split("\n#@top-level\n")) {
      await mp.runPythonAsync(part);
    }
  } catch (e) {
    if (e && e.constructor && e.constructor.name === "PythonError") {
      process.stderr.write(e.message);
      return 1;
    }
    throw e;
  }
  return 0;
}

main().then(
  (rc) => {
    process.exitCode = rc;
  },
  (err) => {
    process.stderr.write(`mpvm: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 2;
  },
);
