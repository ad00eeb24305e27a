export type { BackendFixture } from './describe-backend.ts';
export { describeBackend } from './describe-backend.ts';
export type {
  FaultMethod,
  FaultSpec,
  FaultyBackend,
  FaultyBackendFaults,
  InjectedFault,
  LoadFaultSpec,
  SaveFaultSpec,
} from './faulty-backend.ts';
export { createFaultyBackend } from './faulty-backend.ts';
