// The forge CLI proper (main.ts runs it, after the memory settings).
import { processIo } from './context.ts';
import { ExitCode } from './exit-codes.ts';
import { runCli } from './program.ts';

const controller = new AbortController();
let interrupted = 0;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    interrupted++;
    if (interrupted > 1) process.exit(ExitCode.INTERRUPTED);
    process.stderr.write(
      `\n${sig === 'SIGINT' ? 'interrupted' : 'terminated'}: stopping cleanly (press Ctrl-C again to quit at once)\n`,
    );
    controller.abort();
  });
}
// A closed pipe (e.g. `forge dump … | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(ExitCode.OK);
});

const code = await runCli(process.argv.slice(2), { io: processIo(), signal: controller.signal });
process.exitCode = code;
