#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (run `make build` first).
import '../dist/src/cli/main.js';
