//! The state one parameter's optimizer keeps between steps.

use burn::tensor::Tensor;

/// One parameter's optimizer state: [`TensorOptimizer::state_slots`] tensors shaped like the
/// flat parameter. A transform moves a slot's tensor out ([`State::take`]) and puts its new
/// value back ([`State::put`]) instead of cloning it: burn's CPU backend writes an element-wise
/// result into an operand's buffer when the operand's tensor is its only reference.
#[derive(Clone, Debug, Default)]
pub struct State(Vec<Option<Tensor<1>>>);

impl State {
    pub fn new(tensors: Vec<Tensor<1>>) -> Self {
        Self(tensors.into_iter().map(Some).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves slot `slot`'s tensor out until [`State::put`] returns it.
    ///
    /// # Panics
    /// If the slot does not exist or was taken and not put back (a bug in the optimizer).
    pub fn take(&mut self, slot: usize) -> Tensor<1> {
        self.0[slot]
            .take()
            .unwrap_or_else(|| panic!("optimizer state slot {slot} taken twice"))
    }

    pub fn put(&mut self, slot: usize, tensor: Tensor<1>) {
        self.0[slot] = Some(tensor);
    }

    /// Slot `slot`'s tensor.
    ///
    /// # Panics
    /// If the slot does not exist or is taken.
    pub fn get(&self, slot: usize) -> &Tensor<1> {
        self.0[slot]
            .as_ref()
            .expect("optimizer state read while a slot is taken")
    }

    /// The tensors, in slot order.
    ///
    /// # Panics
    /// If a slot is still taken (only possible inside a step).
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor<1>> {
        (0..self.len()).map(|slot| self.get(slot))
    }
}
