"""Shared helpers of the model tests: toy window graphs laid out like a GraphBatch."""

import torch

NUM_IDS, IN_CHANNELS, EDGE_DIM = 12, 5, 2


def toy_batch(sizes=(5, 7), num_edges=(9, 14), seed=0):
    """Window graphs laid out like a GraphBatch: one node per CAN id, random
    directed edges inside each graph."""
    gen = torch.Generator().manual_seed(seed)
    node_ids, batch, edges, offset = [], [], [], 0
    for g, (n, e) in enumerate(zip(sizes, num_edges)):
        node_ids.append(torch.randperm(NUM_IDS, generator=gen)[:n])
        batch.append(torch.full((n,), g))
        edges.append(torch.randint(0, n, (2, e), generator=gen) + offset)
        offset += n
    edge_index = torch.cat(edges, dim=1)
    return dict(
        x=torch.randn(offset, IN_CHANNELS, generator=gen),
        node_id=torch.cat(node_ids),
        edge_index=edge_index,
        edge_attr=torch.randn(edge_index.size(1), EDGE_DIM, generator=gen),
        batch=torch.cat(batch),
        num_graphs=len(sizes),
    )
