// Lint: the recommended JS and TypeScript rules, plus a few that catch real proxy bugs
// (floating promises lose errors; unused values hide dead code).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['node_modules/**', 'bench/results/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    // node:http's values come from src/http/node-http.ts: an ES import of node:http loads Node's
    // bundled undici into the sidecar (~2.7 MiB RssAnon, issue 17). Types may be imported.
    files: ['src/**/*.ts'],
    ignores: ['src/demo/**', 'src/**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { paths: ['node:http', 'http'].map((name) => ({ name, allowTypeImports: true, message: 'import its values from src/http/node-http.ts (an ES import of node:http loads undici)' })) },
      ],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
);
