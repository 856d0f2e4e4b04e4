"The markdown table every bench script prints"

def print_table(head:tuple, rows:list):
    "Print `rows` under `head` as a markdown table, each column as wide as its widest cell"
    w = [max(len(str(r[i])) for r in [*rows, head]) for i in range(len(head))]
    line = lambda r: '| ' + ' | '.join(str(c).ljust(wi) for c,wi in zip(r, w)) + ' |'
    print(); print(line(head)); print('|' + '|'.join('-'*(wi+2) for wi in w) + '|')
    for r in rows: print(line(r))
