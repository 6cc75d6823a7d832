"""Keras' model summary table, for :meth:`MLP.summary` and
:meth:`Sequential.summary`."""

_WIDTHS = (33, 24, 15)  # Keras 3's column widths


def _row(cells, left, middle, right):
    name, shape, params = cells
    return (f"{left}{' ' + name:<{_WIDTHS[0]}}{middle}{' ' + shape:<{_WIDTHS[1]}}{middle}"
            f"{params + ' ':>{_WIDTHS[2]}}{right}")


def _rule(left, fill, middle, right):
    return left + middle.join(fill * w for w in _WIDTHS) + right


def _size(params):
    """Bytes of ``params`` float32 values, as Keras writes them."""
    size = 4.0 * params
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"


def summary_text(name, rows, total):
    """The table of ``rows`` (name, type, output shape, parameters) of the
    model ``name`` with ``total`` trainable parameters."""
    lines = [f'Model: "{name}"', _rule("┏", "━", "┳", "┓"),
             _row(("Layer (type)", "Output Shape", "Param #"), "┃", "┃", "┃"),
             _rule("┡", "━", "╇", "┩")]
    for k, (layer, kind, shape, params) in enumerate(rows):
        if k:
            lines.append(_rule("├", "─", "┼", "┤"))
        lines.append(_row((f"{layer} ({kind})", str(shape), f"{params:,}"), "│", "│", "│"))
    lines.append(_rule("└", "─", "┴", "┘"))
    lines += [f" Total params: {total:,} ({_size(total)})",
              f" Trainable params: {total:,} ({_size(total)})",
              " Non-trainable params: 0 (0.00 B)"]
    return "\n".join(lines)


def dense_layer_table(weights, biases, dropout):
    """``[(name, type, output shape, parameters)]`` of Dense layers of
    ``weights`` and ``biases``, each hidden one followed by a Dropout where
    ``dropout`` gives it a rate; named as Keras names them (dense, dense_1,
    ...)."""
    rows, count = [], {"Dense": 0, "Dropout": 0}

    def add(kind, units, params):
        k = count[kind]
        count[kind] += 1
        rows.append((kind.lower() + (f"_{k}" if k else ""), kind, (None, units), params))

    for k, (W, b) in enumerate(zip(weights, biases)):
        add("Dense", W.shape[1], W.size + b.size)
        if k < len(dropout) and dropout[k]:
            add("Dropout", W.shape[1], 0)
    return rows
