#!/usr/bin/env node
// Re-executes with lower-memory process settings for data commands before anything else loads
// (see memory-tuning.ts); the CLI itself is imported after that.
import { tuneMemory } from './memory-tuning.ts';

tuneMemory();
await import('./cli-main.ts');
