"""pandas DataFrames through a Pool, both ways, under every start method."""

import pytest


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_dataframes_through_pool(client_program, method):
    client_program('''
        import multiprocessing as mp
        import numpy as np
        import pandas as pd

        def summarise(frame):
            frame['v2'] = frame['v'] * 2          # the received frame is writable
            frame.loc[frame.index[0], 'v'] = -1.0
            return frame.groupby('k').agg(n=('v', 'size'), total=('v2', 'sum'))

        if __name__ == '__main__':
            rng = np.random.default_rng(0)
            frame = pd.DataFrame({'k': rng.integers(0, 5, 40000), 'v': rng.standard_normal(40000),
                                  'when': pd.date_range('2024-01-01', periods=40000, freq='min')})
            chunks = [frame.iloc[i:i + 10000] for i in range(0, 40000, 10000)]
            with mp.get_context(METHOD).Pool(2) as pool:
                parts = pool.map(summarise, chunks)
                one = pool.apply_async(summarise, (frame,)).get(timeout=60)
            combined = pd.concat(parts).groupby(level=0).sum()
            print(combined.round(8).to_csv())
            print(one.round(8).to_csv())
            print(frame.dtypes.to_dict())
    '''.replace('METHOD', repr(method)))
