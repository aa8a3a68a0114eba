"""torch.multiprocessing: tensors shared through queues (file descriptors
passed between processes) and torch.multiprocessing.spawn."""


def test_shared_tensors_through_queue(client_program):
    client_program('''
        import torch
        import torch.multiprocessing as tmp

        def worker(inbox, outbox):
            t = inbox.get(timeout=30)
            t.add_(1)                       # in place: shared with the parent
            outbox.put(torch.arange(5, dtype=torch.float64) * 2)
            inbox.get(timeout=30)           # a tensor's sender must live until it is received
            outbox.put(t.sum().item())

        if __name__ == '__main__':
            for method in ('fork', 'spawn'):
                ctx = tmp.get_context(method)
                shared = torch.zeros(4, 3)
                shared.share_memory_()
                inbox, outbox = ctx.Queue(), ctx.Queue()
                p = ctx.Process(target=worker, args=(inbox, outbox))
                p.start()
                inbox.put(shared)
                made = outbox.get(timeout=30)
                inbox.put('received')
                total = outbox.get(timeout=30)
                p.join(30)
                print(method, p.exitcode, made.tolist(), total, shared.sum().item(), shared.is_shared())
    ''')


def test_spawn(client_program):
    client_program('''
        import torch
        import torch.multiprocessing as tmp

        def run(rank, results, scale):
            results.put((rank, (torch.ones(3) * rank * scale).tolist()))

        if __name__ == '__main__':
            ctx = tmp.get_context('spawn')
            results = ctx.SimpleQueue()
            tmp.spawn(run, args=(results, 10), nprocs=2, join=True)
            got = sorted(results.get() for _ in range(2))
            print(got)
    ''')
