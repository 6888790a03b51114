#!/usr/bin/env node
// A command-line front for the npm `solc` package (solc-js) that answers the
// subset of native solc's interface used by py-solc-x and ape-solidity:
//
//   solc --version
//   solc --standard-json [--base-path P] [--include-path P]... [--allow-paths ...]  < input.json
//   solc --combined-json abi,bin,bin-runtime,... [--optimize] [--optimize-runs N] [remap=...] file.sol...
//
// Only JSON goes to stdout (solc-js's own CLI prints a warning line there), and
// the process exits in the write callback so large outputs are never cut off.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

function write(text, code) {
  process.stdout.write(text, () => process.exit(code));
}

function parseArgs(argv) {
  const opts = { files: [], remappings: [], includePaths: [], basePath: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => argv[++i];
    if (arg === "--version" || arg === "-v") opts.version = true;
    else if (arg === "--standard-json") opts.standardJson = true;
    else if (arg === "--combined-json") opts.combined = next().split(",");
    else if (arg === "--optimize") opts.optimize = true;
    else if (arg === "--optimize-runs") opts.runs = Number(next());
    else if (arg === "--evm-version") opts.evmVersion = next();
    else if (arg === "--base-path") opts.basePath = next();
    else if (arg === "--include-path") opts.includePaths.push(next());
    else if (arg === "--allow-paths" || arg === "--output-dir") next();
    else if (arg.startsWith("--allow-paths=") || arg.startsWith("--base-path=")) {
      if (arg.startsWith("--base-path=")) opts.basePath = arg.slice(12);
    } else if (arg.startsWith("--")) {
      /* flags without a value that solc-js has no use for (e.g. --no-color) */
    } else if (arg.includes("=") && !arg.endsWith(".sol")) opts.remappings.push(arg);
    else opts.files.push(arg);
  }
  return opts;
}

// Resolve an import the way native solc does with --base-path / --include-path.
function makeImportReader(opts) {
  const roots = [opts.basePath || process.cwd(), ...opts.includePaths, process.cwd()];
  return (importPath) => {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((root) => path.resolve(root, importPath));
    for (const file of candidates) {
      if (fs.existsSync(file) && fs.statSync(file).isFile()) {
        return { contents: fs.readFileSync(file, "utf8") };
      }
    }
    return { error: `File not found: ${importPath}` };
  };
}

function standardJson(opts) {
  const input = fs.readFileSync(0, "utf8");
  const output = solc.compile(input, { import: makeImportReader(opts) });
  write(output, 0);
}

const COMBINED_TO_SELECTION = {
  abi: "abi",
  bin: "evm.bytecode.object",
  "bin-runtime": "evm.deployedBytecode.object",
  "srcmap": "evm.bytecode.sourceMap",
  "srcmap-runtime": "evm.deployedBytecode.sourceMap",
  "hashes": "evm.methodIdentifiers",
  "metadata": "metadata",
  "userdoc": "userdoc",
  "devdoc": "devdoc",
  "storage-layout": "storageLayout",
};

function combinedJson(opts) {
  const sources = {};
  for (const file of opts.files) sources[file] = { content: fs.readFileSync(file, "utf8") };
  const selection = opts.combined.map((k) => COMBINED_TO_SELECTION[k]).filter(Boolean);
  const input = {
    language: "Solidity",
    sources,
    settings: {
      remappings: opts.remappings,
      optimizer: { enabled: Boolean(opts.optimize), runs: opts.runs || 200 },
      outputSelection: { "*": { "*": selection, "": ["ast"] } },
      ...(opts.evmVersion ? { evmVersion: opts.evmVersion } : {}),
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: makeImportReader(opts) }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  if (errors.length) {
    process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
    process.exit(1);
  }
  const contracts = {};
  for (const [file, byName] of Object.entries(output.contracts || {})) {
    for (const [name, c] of Object.entries(byName)) {
      const entry = {};
      for (const key of opts.combined) {
        if (key === "abi") entry.abi = c.abi;
        else if (key === "bin") entry.bin = c.evm.bytecode.object;
        else if (key === "bin-runtime") entry["bin-runtime"] = c.evm.deployedBytecode.object;
        else if (key === "srcmap") entry.srcmap = c.evm.bytecode.sourceMap;
        else if (key === "srcmap-runtime") entry["srcmap-runtime"] = c.evm.deployedBytecode.sourceMap;
        else if (key === "hashes") entry.hashes = c.evm.methodIdentifiers;
        else if (key === "metadata") entry.metadata = c.metadata;
        else if (key === "userdoc") entry.userdoc = c.userdoc;
        else if (key === "devdoc") entry.devdoc = c.devdoc;
        else if (key === "storage-layout") entry["storage-layout"] = c.storageLayout;
      }
      contracts[`${file}:${name}`] = entry;
    }
  }
  const sourceList = Object.keys(output.sources || {});
  const astSources = {};
  for (const [file, s] of Object.entries(output.sources || {})) astSources[file] = { AST: s.ast };
  write(JSON.stringify({ contracts, sourceList, sources: astSources, version: solc.version() }), 0);
}

const opts = parseArgs(process.argv.slice(2));
if (opts.version) {
  write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`, 0);
} else if (opts.standardJson) {
  standardJson(opts);
} else if (opts.combined) {
  combinedJson(opts);
} else {
  process.stderr.write("usage: solc --version | --standard-json | --combined-json <outputs> <files>\n");
  process.exit(2);
}
