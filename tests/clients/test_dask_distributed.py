"""dask.distributed: a LocalCluster of worker processes and a Client."""


def test_local_cluster_processes(client_program):
    client_program('''
        import logging
        import warnings

        import dask.array as da
        from dask.distributed import Client, LocalCluster

        def inc(x):
            return x + 1

        if __name__ == '__main__':
            warnings.simplefilter('ignore')
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None, silence_logs=logging.ERROR) as cluster:
                with Client(cluster, timeout=60) as client:
                    print('workers', len(client.scheduler_info()['workers']))
                    futures = client.map(inc, range(20))
                    print('map', sum(client.gather(futures)))
                    x = da.arange(100000, chunks=10000)
                    print('array', int(x.sum().compute()), float((x ** 2).mean().compute()))
    ''', timeout=90)
