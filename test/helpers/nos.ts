/**
 * Python source that makes `nos.common.shm.SharedMemoryNumpyObject` importable without NOS: a dataclass with
 * NOS's pickled state, `{name, shape, dtype}`, so that real `pickle.dumps` writes what a NOS client sends.
 */
export const NOS_STANDIN = `
import sys, types
from dataclasses import dataclass
for _m in ('nos', 'nos.common', 'nos.common.shm'):
    sys.modules.setdefault(_m, types.ModuleType(_m))
sys.modules['nos'].common = sys.modules['nos.common']
sys.modules['nos.common'].shm = sys.modules['nos.common.shm']

@dataclass
class SharedMemoryNumpyObject:
    nbytes: int
    shape: tuple
    dtype: str
    def __getstate__(self):
        return {'name': self.name, 'shape': tuple(self.shape), 'dtype': str(self.dtype)}
    def __setstate__(self, state):
        raise RuntimeError('the service must never need to run this')

SharedMemoryNumpyObject.__module__ = 'nos.common.shm'
sys.modules['nos.common.shm'].SharedMemoryNumpyObject = SharedMemoryNumpyObject

def nos_object(desc):
    o = SharedMemoryNumpyObject(desc['nbytes'], tuple(desc['shape']), desc['dtype'])
    o.name = desc['name']
    return o
`
