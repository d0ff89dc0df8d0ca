#!/usr/bin/env node
// Entry for `npx mediasoup-signal [all|nuve|gateway|agent]`: loads the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
