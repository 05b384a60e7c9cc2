// node:http's exports, for every module of the sidecar. `import { ... } from 'node:http'` makes
// Node build that module's ES namespace, which reads every export, the lazy WebSocket,
// CloseEvent and MessageEvent getters included: that loads Node's bundled undici (~75 internal
// modules; its 745 KiB source stays in the heap), ~2.7 MiB of RssAnon and ~4.4 MiB of RSS per
// sidecar for nothing tsmesh uses (issue 17). process.getBuiltinModule returns the exports as
// require() does, getters unread. Type-only imports from 'node:http' cost nothing; eslint
// refuses value imports of it in src/ (eslint.config.js), test/proxy-modules.test.ts checks.
const http = process.getBuiltinModule('node:http');

export const { Agent, METHODS, STATUS_CODES, createServer, request } = http;
export type Agent = InstanceType<typeof http.Agent>;
